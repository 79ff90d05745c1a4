# Serving a filter to the sidecar: the contract's AlertWorker service over the
# Connect protocol (connectrpc.com), unary calls as HTTP/1.1 POSTs, which
# httpuv serves. gRPC has no official R implementation: R is not among its
# supported languages (https://grpc.io/docs/languages/), and Debian, where the
# package's dependencies come from (`make r-setup`), packages no gRPC library
# for R. The sidecar speaks Connect to R workers (--worker http://HOST:PORT).

# The port a worker listens on when the sidecar does not say
# (ALERT_WORKER_PORT): gRPC's customary port, as the Python SDK uses.
DEFAULT_PORT <- 50051L

SERVICE <- "/alertsidecar.v1.AlertWorker/"
HEALTH_CHECK <- "/grpc.health.v1.Health/Check"

#' Serve a filter to an alert-sidecar
#'
#' Runs until the process is stopped. `filter` is called with a batch of
#' alerts as a data frame, one row per alert:
#'
#' * metadata columns: `id` (`"topic/partition/offset"`), `topic`,
#'   `partition`, `offset`, `timestamp_ms` (Kafka record time, 0 if none),
#'   `key` (the record key as text, `NA` for none or a key that is not text),
#'   `headers` (a list column: each a named list of header values, text or
#'   raw), `attempt` (0 on the first try, then how often the alert was
#'   retried), `schema_id` (Rubin's ids encode the schema version: 1101 is 11.1);
#' * the alert's fields (the JSON form the sidecar decodes Avro alerts into,
#'   only `fields` when given): scalars as columns, nested records flattened
#'   with dots (`diaSource.psfFlux`), arrays of records as list columns of
#'   data frames (`prvDiaSources`), 64-bit integers such as `diaSourceId` as
#'   character strings, exact (never doubles). A field named as a metadata
#'   column is renamed `value.<name>`.
#'
#' The filter answers with one of:
#'
#' * a logical vector, one value per alert: `TRUE` keeps the alert (the input
#'   forwarded as it is), `FALSE` drops it, `NA` has it sent again (RETRY);
#' * a data frame of outputs, one row per record to produce: `alert` (row
#'   number or `id`), and either `value` (character or a list of raw vectors)
#'   or other columns written as one JSON object per row; optional `key`,
#'   `route`, `content_type`. Alerts it does not name are dropped;
#' * a list with one answer per alert: `TRUE`, `FALSE`, [keep()],
#'   [drop_alert()], [retry()], [dead_letter()], [output()] or a list of outputs.
#'
#' An error raised by the filter answers every alert of the batch with RETRY
#' and the error's message; the sidecar retries with a backoff and
#' dead-letters the alerts after its retry limit. An alert whose value is not
#' a JSON object is answered DEAD_LETTER without reaching the filter.
#'
#' @param filter A function of a data frame of alerts (`serve()`), or of one
#'   alert as a list (`serve_each()`: the same metadata and fields, nested
#'   records as lists) answering as above for one alert.
#' @param port The port to listen on: the sidecar tells a worker it starts in
#'   `ALERT_WORKER_PORT`. With `processes > 1`, the first of consecutive ports.
#' @param fields The alert fields the filter reads, as dotted paths
#'   (`"diaSource.psfFlux"`, `"prvDiaSources.midpointMjdTai"`): the sidecar
#'   then decodes and sends only those, which is most of an R worker's speed.
#'   `NULL`: the whole alert.
#' @param name,version What the worker calls itself in the sidecar's logs.
#' @param batch_size How many alerts the filter prefers per call (the sidecar
#'   never sends more); 0 lets the sidecar choose (its `--batch-size`, 100).
#' @param routes Output routes the filter may name besides the default `""`;
#'   each must be bound in the sidecar with `--route NAME=BUFFER`.
#' @param processes How many R processes serve the filter, on ports `port`
#'   to `port + processes - 1` (R runs one batch at a time per process): give
#'   the sidecar `--worker http://127.0.0.1:PORT-LAST`. Keep 1 when the sidecar
#'   starts the worker itself (`--worker-processes N -- Rscript filter.R`).
#' @param host The address to listen on.
#' @param simplify `serve_each()`: `TRUE` reads the alert's JSON as
#'   `jsonlite::fromJSON()` does (arrays of records as data frames), `FALSE`
#'   as plain lists, each JSON object a named list in its own field order.
#' @return Does not return while serving.
#' @export
#' @examples
#' \dontrun{
#' bright <- function(alerts) alerts$diaSource.psfFlux > 36300 # brighter than AB 20
#' serve(bright, fields = "diaSource.psfFlux", name = "bright", version = "1.0")
#' }
serve <- function(filter, port = Sys.getenv("ALERT_WORKER_PORT", DEFAULT_PORT), fields = NULL,
                  name = worker_name(substitute(filter)), version = "0.0.0", batch_size = 0,
                  routes = NULL, processes = 1, host = "127.0.0.1") {
  worker <- new_worker(filter, per_alert = FALSE, name = name, version = version, fields = fields,
                       routes = routes, batch_size = batch_size)
  run_worker(worker, port, processes, host)
}

#' @rdname serve
#' @export
serve_each <- function(filter, port = Sys.getenv("ALERT_WORKER_PORT", DEFAULT_PORT), fields = NULL,
                       name = worker_name(substitute(filter)), version = "0.0.0", batch_size = 0,
                       routes = NULL, processes = 1, host = "127.0.0.1", simplify = TRUE) {
  worker <- new_worker(filter, per_alert = TRUE, name = name, version = version, fields = fields,
                       routes = routes, batch_size = batch_size, simplify = simplify)
  run_worker(worker, port, processes, host)
}

worker_name <- function(expression) {
  if (is.name(expression)) as.character(expression) else "r-filter"
}

run_worker <- function(worker, port, processes, host) {
  port <- suppressWarnings(as.integer(port))
  if (is.na(port) || port < 1 || port > 65535) {
    stop("port must be a TCP port number (set ALERT_WORKER_PORT or serve(port = ...))", call. = FALSE)
  }
  if (!is.numeric(processes) || length(processes) != 1 || processes < 1 || processes != round(processes)) {
    stop("processes must be a whole number from 1 up", call. = FALSE)
  }
  contract() # read the .proto before forking, once for every process
  common_answers(worker)
  if (processes > 1) {
    parent <- Sys.getpid()
    for (i in seq_len(processes - 1)) {
      # Forked before any socket is open: each child listens on its own port.
      parallel::mcparallel(serve_port(worker, port + i, host, parent = parent), detached = TRUE)
    }
  }
  serve_port(worker, port, host)
}

# Serve one port until the process is stopped (or, in a forked child, until
# the parent is gone: a child must not outlive the worker it belongs to).
serve_port <- function(worker, port, host, parent = NULL) {
  app <- list(call = function(req) connect_app(worker, req))
  server <- tryCatch(httpuv::startServer(host, port, app), error = function(e) {
    stop(sprintf("cannot listen on %s:%d: %s (is another worker running there?)", host, port,
                 conditionMessage(e)), call. = FALSE)
  })
  on.exit(httpuv::stopServer(server), add = TRUE)
  log_line("serving worker ", worker$name, " ", worker$version, " on http://", host, ":", port,
           " (pid ", Sys.getpid(), ")")
  repeat {
    httpuv::service(1000)
    if (!is.null(parent) && !isTRUE(tools::pskill(parent, 0L))) break
  }
  invisible(NULL)
}

# -- the Connect protocol ---------------------------------------------------------

connect_app <- function(worker, req) {
  headers <- list(
    content_type = req$CONTENT_TYPE %||% req$HTTP_CONTENT_TYPE %||% "",
    protocol_version = req$HTTP_CONNECT_PROTOCOL_VERSION,
    content_encoding = req$HTTP_CONTENT_ENCODING %||% ""
  )
  body <- if (req$REQUEST_METHOD == "POST") req$rook.input$read() else raw(0)
  handle_call(worker, req$REQUEST_METHOD, req$PATH_INFO, headers, body)
}

# A Connect unary call: method and path, the headers that matter, the body.
# Returns the httpuv response list.
handle_call <- function(worker, method, path, headers, body) {
  if (method != "POST") {
    return(connect_error(405L, "unimplemented", paste("Connect calls are POSTs, not", method),
                         extra = list(Allow = "POST")))
  }
  if (!is.null(headers$protocol_version) && headers$protocol_version != "1") {
    return(connect_error(400L, "invalid_argument",
                         paste("Connect-Protocol-Version", headers$protocol_version, "is not 1")))
  }
  type <- tolower(trimws(sub(";.*", "", headers$content_type)))
  if (type != "application/proto") {
    return(connect_error(415L, "unimplemented", sprintf(
      "this worker speaks Connect with Content-Type application/proto, not \"%s\"", headers$content_type)))
  }
  encoding <- tolower(headers$content_encoding %||% "")
  if (encoding == "gzip") {
    body <- tryCatch(memDecompress(body, "gzip"), error = function(e) NULL)
    if (is.null(body)) return(connect_error(400L, "invalid_argument", "the gzip body does not decompress"))
  } else if (nzchar(encoding) && encoding != "identity") {
    return(connect_error(400L, "unimplemented", paste("Content-Encoding", encoding, "is not supported")))
  }
  answer <- tryCatch(
    switch(path,
      "/alertsidecar.v1.AlertWorker/ProcessBatch" = process_batch_call(worker, body),
      "/alertsidecar.v1.AlertWorker/ProcessAlert" = process_alert_call(worker, body),
      "/alertsidecar.v1.AlertWorker/Describe" = RProtoBuf::serialize(describe_worker(worker), NULL),
      "/grpc.health.v1.Health/Check" = health_serving(),
      "/alertsidecar.v1.AlertWorker/ProcessStream" = structure(
        "ProcessStream needs HTTP/2 streaming; this R worker answers ProcessBatch and ProcessAlert",
        class = "unimplemented"),
      structure(paste("no method", path), class = "unimplemented")),
    bad_request = function(e) structure(conditionMessage(e), class = "bad_request"),
    error = function(e) {
      log_line("internal error on ", path, ": ", conditionMessage(e))
      structure(one_line(conditionMessage(e)), class = "internal")
    })
  if (inherits(answer, "unimplemented")) {
    return(connect_error(if (startsWith(path, SERVICE)) 501L else 404L, "unimplemented", unclass(answer)))
  }
  if (inherits(answer, "bad_request")) return(connect_error(400L, "invalid_argument", unclass(answer)))
  if (inherits(answer, "internal")) return(connect_error(500L, "internal", unclass(answer)))
  list(status = 200L, headers = list("Content-Type" = "application/proto"), body = answer)
}

connect_error <- function(status, code, message, extra = list()) {
  list(status = status,
       headers = c(list("Content-Type" = "application/json"), extra),
       body = as.character(jsonlite::toJSON(list(code = code, message = message), auto_unbox = TRUE)))
}

bad_request <- function(message) {
  structure(class = c("bad_request", "error", "condition"), list(message = message, call = NULL))
}

read_message <- function(type, body, what) {
  message <- tryCatch(RProtoBuf::read(type, body), error = function(e) {
    stop(bad_request(paste0("the body is not an alertsidecar.v1.", what, ": ", conditionMessage(e))))
  })
  # RProtoBuf keeps what it could parse of malformed bytes without a word; a
  # message that does not serialize back to the body's size was not whole.
  if (RProtoBuf::bytesize(message) != length(body)) {
    stop(bad_request(sprintf("the body (%d bytes) is not a whole alertsidecar.v1.%s", length(body), what)))
  }
  message
}

process_batch_call <- function(worker, body) {
  cc <- contract()
  batch <- read_message(cc$AlertBatch, body, "AlertBatch")
  if (!length(batch$alerts)) stop(bad_request("the AlertBatch holds no alert; a batch has at least one"))
  # batch_id is a uint64: read as a string so that it is echoed exactly.
  old <- options(RProtoBuf.int64AsString = TRUE)
  batch_id <- batch$batch_id
  options(old)
  alerts <- alerts_of_messages(batch$alerts)
  results <- decide(worker, alerts$meta, alerts$values)
  encode_batch_result(batch_id, alerts$meta$id, results)
}

process_alert_call <- function(worker, body) {
  cc <- contract()
  alert <- read_message(cc$Alert, body, "Alert")
  alerts <- alerts_of_messages(list(alert))
  encode_result(alerts$meta$id, decide(worker, alerts$meta, alerts$values)[[1]])
}

# HealthCheckResponse{status: SERVING}: field 1, varint 1. grpc's health.proto
# is not ours to copy; its answer is these two bytes while the worker serves.
health_serving <- function() as.raw(c(0x08, 0x01))
