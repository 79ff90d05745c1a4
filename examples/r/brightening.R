# A Rubin alert filter in R: keep alerts whose latest detection is
# significantly brighter than the same band's earlier detections.
#
# The statistic, per alert, in the band of the triggering diaSource: the
# inverse-variance weighted mean of the previous diaSources' psfFlux in that
# band is the baseline, and
#
#     z = (psfFlux - baseline) / sqrt(psfFluxErr^2 + 1 / sum(1 / prvErr^2))
#
# is a standard normal for a source that does not vary and Gaussian flux
# errors as reported. An alert is kept when the one-sided p-value
# P(Z > z) is below FALSE_ALARM_RATE. Each alert gets one test, so the rate is
# per alert and needs no correction for multiple tests (Bonferroni over
# nothing); across a stream of N constant sources about N * FALSE_ALARM_RATE
# alerts pass. Other bands are ignored: colour changes would mimic brightening.
#
# Run it beside a sidecar (which starts it and sets ALERT_WORKER_PORT):
#   alert-sidecar --in ... --out ... --worker-protocol connect -- Rscript examples/r/brightening.R

library(alertworker)

# Per alert: one alert in a thousand from a constant source passes.
FALSE_ALARM_RATE <- 1e-3
# Fewer previous detections in the band give no baseline worth the name.
MIN_PREVIOUS <- 3L

# The fields the filter reads: the sidecar sends only these (about 3 KB an
# alert with 30 previous sources, instead of about 10 KB without cutouts).
FIELDS <- c(
  "diaSourceId",
  "diaSource.midpointMjdTai", "diaSource.psfFlux", "diaSource.psfFluxErr", "diaSource.band",
  "prvDiaSources.midpointMjdTai", "prvDiaSources.psfFlux", "prvDiaSources.psfFluxErr",
  "prvDiaSources.band"
)

# z of the latest flux against the weighted mean of the band's previous
# fluxes, for every alert of a batch at once; NA where the band has fewer
# than MIN_PREVIOUS usable previous detections.
brightening_z <- function(alerts) {
  n <- nrow(alerts)
  previous <- alerts$prvDiaSources
  if (is.null(previous)) previous <- vector("list", n)
  counts <- vapply(previous, function(p) if (is.data.frame(p)) nrow(p) else 0L, 0L)
  # All previous detections of the batch as long vectors, each with its alert's row.
  column <- function(name) unlist(lapply(previous[counts > 0], function(p)
    if (is.null(p[[name]])) rep(NA, nrow(p)) else p[[name]]), use.names = FALSE)
  flux_prv <- column("psfFlux")
  error_prv <- column("psfFluxErr")
  row <- rep(seq_len(n), counts)
  z <- rep(NA_real_, n)
  if (!length(row)) return(z)
  usable <- column("band") == alerts$diaSource.band[row] &
    is.finite(flux_prv) & is.finite(error_prv) & error_prv > 0
  usable[is.na(usable)] <- FALSE
  if (!any(usable)) return(z)
  weight <- 1 / error_prv[usable]^2
  sums <- rowsum(cbind(weight, weight * flux_prv[usable], 1), row[usable])
  rows <- as.integer(rownames(sums))
  enough <- sums[, 3] >= MIN_PREVIOUS
  rows <- rows[enough]
  baseline <- sums[enough, 2] / sums[enough, 1]
  flux <- alerts$diaSource.psfFlux[rows]
  error <- alerts$diaSource.psfFluxErr[rows]
  z[rows] <- (flux - baseline) / sqrt(error^2 + 1 / sums[enough, 1])
  z
}

# The filter: TRUE (keep) for a significant brightening, FALSE otherwise.
brightening <- function(alerts) {
  z <- brightening_z(alerts)
  !is.na(z) & stats::pnorm(z, lower.tail = FALSE) < FALSE_ALARM_RATE
}

if (sys.nframe() == 0L) {
  serve(brightening, fields = FIELDS, name = "brightening", version = "1.0")
}
