#' Run a filter on a file of alerts, without Kafka or a sidecar
#'
#' Reads JSON lines (one alert per line, in the JSON form the sidecar sends:
#' `alert-sidecar inspect alerts.avro > alerts.jsonl` writes it from Avro
#' files or a Kafka buffer), keeps only `fields` as the sidecar would, and
#' answers them exactly as [serve()] answers the sidecar.
#'
#' @param filter A filter as [serve()] takes it (or, with `per_alert = TRUE`,
#'   as [serve_each()] takes it).
#' @param file A file of JSON lines.
#' @param fields The fields the filter reads, as given to [serve()].
#' @param per_alert `TRUE` for a filter of one alert, as [serve_each()] takes.
#' @param routes The routes the filter may name, as given to [serve()].
#' @param batch_size Alerts per call of the filter (the sidecar's default is 100).
#' @return The alerts as the filter saw them (a data frame), with three
#'   columns added: `.verdict` (`"OK"`, `"RETRY"` or `"DEAD_LETTER"`),
#'   `.outputs` (the number of records the alert would produce: 0 for a
#'   dropped alert) and `.error`. Kept alerts are
#'   `subset(result, .verdict == "OK" & .outputs > 0)`.
#' @export
#' @examples
#' file <- tempfile(fileext = ".jsonl")
#' writeLines(c('{"diaSource": {"psfFlux": 50000}}', '{"diaSource": {"psfFlux": 100}}'), file)
#' try_filter(function(alerts) alerts$diaSource.psfFlux > 36300, file, fields = "diaSource.psfFlux")
try_filter <- function(filter, file, fields = NULL, per_alert = FALSE, routes = NULL, batch_size = 100) {
  worker <- new_worker(filter, per_alert = per_alert, name = "try_filter", version = "0.0.0",
                       fields = fields, routes = routes, batch_size = batch_size)
  lines <- readLines(file, warn = FALSE, encoding = "UTF-8")
  lines <- lines[nzchar(trimws(lines))]
  if (length(worker$fields)) lines <- vapply(lines, project_json, "", fields = worker$fields, USE.NAMES = FALSE)
  n <- length(lines)
  topic <- basename(file)
  meta <- list(id = sprintf("%s/0/%d", topic, seq_len(n) - 1L), topic = rep(topic, n),
               partition = integer(n), offset = as.numeric(seq_len(n) - 1L), timestamp_ms = numeric(n),
               key = rep(NA_character_, n), headers = rep(list(NO_HEADERS), n), attempt = integer(n),
               schema_id = integer(n))
  values <- lapply(lines, function(line) charToRaw(enc2utf8(line)))
  results <- vector("list", n)
  size <- if (worker$batch_size > 0) worker$batch_size else 100
  for (first in seq(1, n, by = size)[n > 0]) {
    rows <- first:min(n, first + size - 1)
    results[rows] <- decide(worker, lapply(meta, `[`, rows), values[rows])
  }
  parsed <- parse_values(values, per_alert = FALSE)
  frame <- alerts_frame(meta, parsed$parsed %||% data.frame(), parsed$good)
  frame <- frame[match(seq_len(n), parsed$good), , drop = FALSE]
  rownames(frame) <- NULL
  frame$id <- meta$id
  frame$.verdict <- vapply(results, `[[`, "", "verdict")
  frame$.outputs <- vapply(results, function(r) if (r$verdict == "OK") length(r$outputs) else 0L, 0L)
  frame$.error <- vapply(results, `[[`, "", "error")
  frame
}

# The JSON form of one alert with only `fields` (dotted paths), as the
# sidecar projects alerts it decodes (a path through an array applies to
# each element; a field the alert lacks is left out).
project_json <- function(text, fields) {
  value <- tryCatch(jsonlite::parse_json(text, bigint_as_char = TRUE), error = function(e) NULL)
  if (!is.list(value) || is.null(names(value))) return(text) # not an object: answered as the sidecar would
  tree <- list()
  for (path in fields) tree <- add_path(tree, strsplit(path, ".", fixed = TRUE)[[1]])
  to_json(project(value, tree))
}

add_path <- function(tree, names) {
  name <- names[[1]]
  if (length(names) == 1) {
    tree[name] <- list(TRUE) # kept whole
  } else if (!isTRUE(tree[[name]])) {
    tree[[name]] <- add_path(if (is.null(tree[[name]])) list() else tree[[name]], names[-1])
  }
  tree
}

project <- function(value, tree) {
  if (isTRUE(tree) || !is.list(value)) return(value)
  if (is.null(names(value))) return(lapply(value, project, tree = tree)) # an array
  kept <- intersect(names(tree), names(value))
  stats::setNames(lapply(kept, function(name) project(value[[name]], tree[[name]])), kept)
}
