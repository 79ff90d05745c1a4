test_that("Describe tells the sidecar what the worker takes", {
  worker <- ns$new_worker(function(a) TRUE, FALSE, "bright", "2.1", c("diaSource.psfFlux"), c("side"), 50)
  response <- call_worker(worker, "Describe", RProtoBuf::serialize(RProtoBuf::new(cc$DescribeRequest), NULL))
  expect_equal(response$status, 200L)
  description <- RProtoBuf::read(cc$WorkerDescription, response$body)
  expect_equal(description$name, "bright")
  expect_equal(description$version, "2.1")
  expect_equal(description$protocol_version, 1)
  expect_equal(description$accepts, "application/json")
  expect_equal(description$fields, "diaSource.psfFlux")
  expect_equal(description$routes, "side")
  expect_equal(description$preferred_batch_size, 50)
  expect_match(description$sdk, "^r/alertworker ")
})

test_that("ProcessAlert answers one alert", {
  worker <- batch_worker(function(alerts) alerts$flux > 1)
  alert <- RProtoBuf::new(cc$Alert, id = "t/0/5", value = charToRaw('{"flux": 2}'))
  response <- call_worker(worker, "ProcessAlert", RProtoBuf::serialize(alert, NULL))
  result <- RProtoBuf::read(cc$AlertResult, response$body)
  expect_equal(c(result$id, result$verdict), c("t/0/5", "1"))
})

test_that("the health check answers SERVING", {
  response <- ns$handle_call(batch_worker(identity), "POST", "/grpc.health.v1.Health/Check",
                             list(content_type = "application/proto"), raw(0))
  expect_equal(response$body, as.raw(c(0x08, 0x01))) # HealthCheckResponse{status: SERVING}
})

test_that("Connect errors are JSON with a code and the status the Connect protocol gives it", {
  worker <- batch_worker(function(a) TRUE)
  error_of <- function(response) jsonlite::fromJSON(response$body)
  streamed <- call_worker(worker, "ProcessStream", raw(0))
  expect_equal(streamed$status, 501L)
  expect_equal(error_of(streamed)$code, "unimplemented")
  as_json <- call_worker(worker, "ProcessBatch", raw(0), content_type = "application/json")
  expect_equal(as_json$status, 415L)
  malformed <- call_worker(worker, "ProcessBatch", as.raw(c(0x12, 0x05, 0x0a)))
  expect_equal(malformed$status, 400L)
  expect_equal(error_of(malformed)$code, "invalid_argument")
  empty <- call_worker(worker, "ProcessBatch", raw(0))
  expect_equal(error_of(empty)$code, "invalid_argument")
  expect_equal(ns$handle_call(worker, "GET", "/", list(), raw(0))$status, 405L)
  expect_equal(ns$handle_call(worker, "POST", "/other.Service/Call", list(content_type = "application/proto"),
                              raw(0))$status, 404L)
})
