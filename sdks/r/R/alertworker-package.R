#' alertworker: alert filters in R for alert-sidecar stages
#'
#' A stage of an alert pipeline is an `alert-sidecar` (which owns Kafka:
#' offsets, retries, dead letters) and a worker that decides about alerts.
#' This package makes an R function that worker: [serve()] (a filter of a
#' batch of alerts as a data frame) or [serve_each()] (a filter of one
#' alert), answering with `TRUE`/`FALSE` or the verdicts in [verdicts].
#' [try_filter()] runs a filter on a file of alerts without Kafka.
#'
#' The contract is the repository's `proto/alertsidecar/v1/worker.proto`;
#' the package ships a copy of it, made at install from `proto/`, and reads it at run
#' time (see [proto_dir()]), so `R CMD INSTALL sdks/r` is all it needs. The
#' worker serves it with the Connect protocol, which the sidecar speaks to R
#' workers.
#'
#' @keywords internal
"_PACKAGE"
