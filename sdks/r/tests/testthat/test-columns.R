# The fast columns of columns.R must be what jsonlite's own simplification makes.
as_jsonlite <- function(texts) {
  jsonlite::fromJSON(paste0("[", paste(texts, collapse = ","), "]"), bigint_as_char = TRUE, flatten = TRUE)
}

test_that("regular alerts give jsonlite's columns", {
  texts <- c('{"a": 1, "b": {"c": "x", "d": 1.5}, "e": [{"f": 1, "g": "u"}, {"f": 2, "g": "v"}]}',
             '{"a": 2, "b": {"c": "y", "d": null}, "e": [{"f": 3, "g": "w"}]}')
  ours <- ns$parse_array(texts)
  theirs <- as_jsonlite(texts)
  for (name in c("a", "b.c", "b.d")) expect_identical(ours[[name]], theirs[[name]])
  expect_equal(ours$e[[1]], theirs$e[[1]], ignore_attr = TRUE)
  expect_equal(ours$e[[2]]$g, "w")
})

test_that("missing fields, nulls, arrays of scalars and big integers", {
  texts <- c('{"a": 1, "big": 9223372036854775807, "s": [1, 2]}', '{"b": true, "big": 5, "s": []}')
  ours <- ns$parse_array(texts)
  expect_identical(ours$a, c(1L, NA))
  expect_identical(ours$b, c(NA, TRUE))
  expect_identical(ours$big, c("9223372036854775807", "5"))
  expect_equal(ours$s, list(c(1L, 2L), integer(0)), ignore_attr = TRUE)
})

test_that("objects without fields give rows without columns", {
  expect_equal(dim(ns$parse_array(c("{}", "{}"))), c(2L, 0L))
})
