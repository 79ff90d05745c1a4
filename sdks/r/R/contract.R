# The contract, read at run time from the project's one copy of it
# (proto/alertsidecar/v1/worker.proto): the package never carries a second,
# hand-written version of the messages.

.state <- new.env(parent = emptyenv())

#' Where the contract's `.proto` files are read from
#'
#' The directory that holds `alertsidecar/v1/worker.proto`: the option
#' `alertworker.proto_dir`, else the environment variable
#' `ALERTWORKER_PROTO_DIR`, else the copy that `make r-install` puts into the
#' installed package (`inst/proto`, made from the repository's `proto/`).
#'
#' @return The directory, a character string.
#' @export
#' @examples
#' \dontrun{
#' proto_dir()
#' }
proto_dir <- function() {
  dir <- getOption("alertworker.proto_dir", "")
  if (!nzchar(dir)) dir <- Sys.getenv("ALERTWORKER_PROTO_DIR", "")
  if (!nzchar(dir)) dir <- system.file("proto", package = "alertworker")
  if (!nzchar(dir) || !file.exists(file.path(dir, "alertsidecar", "v1", "worker.proto"))) {
    stop("cannot find alertsidecar/v1/worker.proto: install the package with `make r-install` ",
         "(it copies the repository's proto/ into it), or set ALERTWORKER_PROTO_DIR to the ",
         "repository's proto/ directory", call. = FALSE)
  }
  normalizePath(dir)
}

# The descriptors and the pieces of AlertResult and BatchResult that every
# batch reuses, made once per process.
contract <- function() {
  if (!is.null(.state$contract)) return(.state$contract)
  RProtoBuf::readProtoFiles2("alertsidecar/v1/worker.proto", protoPath = proto_dir())
  message_type <- function(name) RProtoBuf::P(paste0("alertsidecar.v1.", name))
  verdicts <- RProtoBuf::P("alertsidecar.v1.Verdict")
  types <- list(
    DescribeRequest = message_type("DescribeRequest"),
    WorkerDescription = message_type("WorkerDescription"),
    Alert = message_type("Alert"),
    AlertBatch = message_type("AlertBatch"),
    AlertResult = message_type("AlertResult"),
    AlertOutput = message_type("AlertOutput"),
    BatchResult = message_type("BatchResult"),
    Header = message_type("Header")
  )
  # A BatchResult is written as its batch_id (by RProtoBuf) followed by one
  # length-delimited AlertResult per alert, each its id followed by the
  # serialized rest of the result: protobuf allows a message to be
  # concatenated from its fields, and this spares R one message object per
  # alert. The field numbers come from the descriptors, not from this file.
  field_tag <- function(type, name) {
    number <- RProtoBuf::number(type[[name]])
    as.raw(number * 8 + 2) # wire type 2, length-delimited; numbers below 16 fit one byte
  }
  .state$contract <- c(types, list(
    OK = verdicts[["VERDICT_OK"]],
    RETRY = verdicts[["VERDICT_RETRY"]],
    DEAD_LETTER = verdicts[["VERDICT_DEAD_LETTER"]],
    PROTOCOL_VERSION_1 = RProtoBuf::P("alertsidecar.v1.ProtocolVersion")[["PROTOCOL_VERSION_1"]],
    result_id_tag = field_tag(types$AlertResult, "id"),
    batch_results_tag = field_tag(types$BatchResult, "results")
  ))
  .state$contract
}

# Varint of a length (protobuf's base-128 encoding, least significant group first).
varint <- function(n) {
  if (n < 128) return(as.raw(n))
  out <- raw(0)
  while (n >= 128) {
    out <- c(out, as.raw(n %% 128 + 128))
    n <- n %/% 128
  }
  c(out, as.raw(n))
}
