# The contract, read at run time from the .proto the package ships
# (inst/proto/alertsidecar/v1/worker.proto): copied from proto/, the
# contract's one copy, by the package's configure script at each install
# (checked by tests/unit/test_generated_drift.py).
# The package never carries a hand-written version of the messages.

.state <- new.env(parent = emptyenv())

#' Where the contract's `.proto` files are read from
#'
#' The directory that holds `alertsidecar/v1/worker.proto`: the option
#' `alertworker.proto_dir`, else the environment variable
#' `ALERTWORKER_PROTO_DIR`, else the copy the package ships (its `proto`
#' folder, copied from the repository's `proto/` when it is installed). Set the
#' option or the variable only to serve another version of the contract.
#'
#' @return The directory, a character string.
#' @export
#' @examples
#' \dontrun{
#' proto_dir()
#' }
proto_dir <- function() {
  contract_file <- file.path("alertsidecar", "v1", "worker.proto")
  named_by <- c(option = getOption("alertworker.proto_dir", ""),
                variable = Sys.getenv("ALERTWORKER_PROTO_DIR", ""))
  named_by <- named_by[nzchar(named_by)]
  if (length(named_by)) {
    dir <- named_by[[1]]
    if (!file.exists(file.path(dir, contract_file))) {
      what <- if (names(named_by)[[1]] == "option") "the option alertworker.proto_dir" else "ALERTWORKER_PROTO_DIR"
      stop(what, " is \"", dir, "\", which holds no alertsidecar/v1/worker.proto: set it to a ",
           "directory that does (the repository's proto/), or unset it to use the copy the package ships",
           call. = FALSE)
    }
  } else {
    dir <- system.file("proto", package = "alertworker")
    if (!nzchar(dir) || !file.exists(file.path(dir, contract_file))) {
      stop("the installed alertworker has no alertsidecar/v1/worker.proto: reinstall it from the ",
           "repository with `R CMD INSTALL sdks/r` (or `make r-install`), which copies proto/ into it",
           call. = FALSE)
    }
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
