# The brightening statistic of examples/r/brightening.R on synthetic light curves.
source(file.path("..", "brightening.R"), chdir = TRUE)

# A batch of n alerts as the SDK gives it to the filter: the latest r-band
# detection and `previous` earlier ones, every flux drawn around `truth`
# with Gaussian errors `error`.
light_curves <- function(n, previous = 30, truth = 10000, error = 100, latest = truth, bands = "r") {
  alerts <- data.frame(id = sprintf("t/0/%d", seq_len(n)))
  alerts$diaSource.band <- "r"
  alerts$diaSource.psfFluxErr <- error
  alerts$diaSource.psfFlux <- stats::rnorm(n, latest, error)
  # Data frames made directly: data.frame() would take minutes for 100,000 alerts.
  alerts$prvDiaSources <- lapply(seq_len(n), function(i) structure(list(
    midpointMjdTai = 60000 + seq_len(previous),
    band = rep_len(bands, previous),
    psfFlux = stats::rnorm(previous, truth, error),
    psfFluxErr = rep(error, previous)), class = "data.frame", row.names = c(NA, -previous)))
  alerts
}

test_that("constant sources pass at about the stated false-alarm rate", {
  set.seed(1)
  n <- 100000
  kept <- brightening(light_curves(n, previous = 10))
  # z is a standard normal for a constant source: about 100 of 100,000 pass.
  # The binomial standard deviation is 10: the bounds are 4.5 of them either
  # side, while a rate wrong by a factor of two falls far outside.
  expect_gt(sum(kept), n * FALSE_ALARM_RATE - 45)
  expect_lt(sum(kept), n * FALSE_ALARM_RATE + 45)
})

test_that("z is a standard normal for constant sources", {
  set.seed(2)
  z <- brightening_z(light_curves(20000, previous = 5))
  expect_equal(mean(z), 0, tolerance = 0.03)
  expect_equal(stats::sd(z), 1, tolerance = 0.03)
})

test_that("a clear brightening is kept", {
  set.seed(3)
  # 10 sigma brighter than its past: kept every time.
  expect_true(all(brightening(light_curves(1000, latest = 11000))))
})

test_that("only the band of the latest detection counts", {
  set.seed(4)
  alerts <- light_curves(100, bands = c("r", "g"))
  # The g detections are much fainter: against them the latest r flux would be a brightening.
  alerts$prvDiaSources <- lapply(alerts$prvDiaSources, function(p) {
    p$psfFlux[p$band == "g"] <- 2000
    p
  })
  expect_lt(sum(brightening(alerts)), 3)
})

test_that("too few previous detections, empty histories and missing fluxes are not kept", {
  alerts <- light_curves(3, previous = MIN_PREVIOUS - 1, latest = 1e6)
  expect_equal(brightening(alerts), c(FALSE, FALSE, FALSE))
  alerts <- light_curves(2, latest = 1e6)
  alerts$prvDiaSources[[1]] <- data.frame()
  alerts$diaSource.psfFlux[[2]] <- NA
  expect_equal(brightening(alerts), c(FALSE, FALSE))
})

test_that("the filter runs through the SDK on a file of alerts", {
  file <- tempfile(fileext = ".jsonl")
  curve <- function(latest) sprintf(paste0(
    '{"diaSourceId": 144116287587483648, "diaSource": {"band": "r", "psfFlux": %f, "psfFluxErr": 100, ',
    '"midpointMjdTai": 60010}, "prvDiaSources": [%s], "cutoutDifference": "AAAA"}'), latest,
    paste(sprintf('{"band": "r", "psfFlux": 10000, "psfFluxErr": 100, "midpointMjdTai": %d}', 60000:60005),
          collapse = ","))
  writeLines(c(curve(20000), curve(10010)), file)
  result <- alertworker::try_filter(brightening, file, fields = FIELDS)
  expect_equal(result$.outputs, c(1L, 0L))
  expect_equal(result$diaSourceId, rep("144116287587483648", 2))
})
