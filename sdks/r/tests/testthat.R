library(testthat)
library(alertworker)

test_check("alertworker")
