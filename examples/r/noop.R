# A worker that keeps every alert, to measure what the R SDK itself costs
# (receiving, parsing and answering a batch) beside a sidecar.
#
#   Rscript examples/r/noop.R [PROCESSES] [whole]
#
# PROCESSES R processes serve ports ALERT_WORKER_PORT (default 50051) and up;
# "whole" asks for whole alerts instead of the brightening filter's fields.

library(alertworker)

args <- commandArgs(trailingOnly = TRUE)
processes <- if (length(args) >= 1) as.integer(args[[1]]) else 1L
whole <- length(args) >= 2 && args[[2]] == "whole"

# The same projection as examples/r/brightening.R, so that the cost measured
# is that of a realistic filter's input.
FIELDS <- c(
  "diaSourceId",
  "diaSource.midpointMjdTai", "diaSource.psfFlux", "diaSource.psfFluxErr", "diaSource.band",
  "prvDiaSources.midpointMjdTai", "prvDiaSources.psfFlux", "prvDiaSources.psfFluxErr",
  "prvDiaSources.band"
)

keep_all <- function(alerts) rep(TRUE, nrow(alerts))

serve(keep_all, fields = if (whole) NULL else FIELDS, name = "noop", version = "1.0", processes = processes)
