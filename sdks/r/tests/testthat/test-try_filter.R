test_that("try_filter answers a file of alerts as the sidecar would, with the projection", {
  file <- tempfile(fileext = ".jsonl")
  writeLines(c('{"diaSource": {"psfFlux": 50000, "ra": 1}, "cutout": "AAAA"}',
               '{"diaSource": {"psfFlux": 100, "ra": 2}, "cutout": "AAAA"}',
               'not json'), file)
  seen <- NULL
  bright <- function(alerts) { seen <<- names(alerts); alerts$diaSource.psfFlux > 36300 }
  result <- try_filter(bright, file, fields = "diaSource.psfFlux")
  expect_equal(result$.verdict, c("OK", "OK", "DEAD_LETTER"))
  expect_equal(result$.outputs, c(1L, 0L, 0L))
  expect_false("cutout" %in% seen)
  expect_false("diaSource.ra" %in% seen)
  expect_equal(nrow(subset(result, .verdict == "OK" & .outputs > 0)), 1)
})
