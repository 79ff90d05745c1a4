# The contract comes with the package: no option, no environment variable.
without_proto_settings <- function(code) {
  old_option <- options(alertworker.proto_dir = NULL)
  old_variable <- Sys.getenv("ALERTWORKER_PROTO_DIR", NA)
  Sys.unsetenv("ALERTWORKER_PROTO_DIR")
  on.exit({
    options(old_option)
    if (!is.na(old_variable)) Sys.setenv(ALERTWORKER_PROTO_DIR = old_variable)
  })
  code
}

test_that("the installed package reads the contract it ships", {
  without_proto_settings({
    shipped <- system.file("proto", "alertsidecar", "v1", "worker.proto", package = "alertworker")
    expect_true(nzchar(shipped))
    expect_equal(proto_dir(), normalizePath(system.file("proto", package = "alertworker")))
  })
})

test_that("a proto directory without the contract is named, with what to do", {
  empty <- tempfile("no-proto")
  dir.create(empty)
  on.exit(unlink(empty, recursive = TRUE))
  without_proto_settings({
    Sys.setenv(ALERTWORKER_PROTO_DIR = empty)
    expect_error(proto_dir(), "ALERTWORKER_PROTO_DIR is \".*no-proto.*\", which holds no alertsidecar/v1/worker.proto")
    Sys.unsetenv("ALERTWORKER_PROTO_DIR")
    options(alertworker.proto_dir = empty)
    expect_error(proto_dir(), "the option alertworker.proto_dir is .*unset it to use the copy the package ships")
  })
})
