# Build the contract's messages as the sidecar sends them, and read the
# worker's answers back with RProtoBuf: the tests check the bytes on the wire.
ns <- asNamespace("alertworker")
cc <- ns$contract()

make_batch <- function(values, batch_id = 1, keys = NULL, attempts = 0, topic = "alerts") {
  alerts <- lapply(seq_along(values), function(i) {
    alert <- RProtoBuf::new(cc$Alert, id = sprintf("%s/0/%d", topic, i - 1), topic = topic, partition = 0,
                            offset = i - 1, value = charToRaw(values[[i]]), content_type = "application/json",
                            attempt = attempts)
    if (!is.null(keys) && !is.na(keys[[i]])) alert$key <- charToRaw(keys[[i]])
    alert
  })
  RProtoBuf::serialize(RProtoBuf::new(cc$AlertBatch, batch_id = batch_id, alerts = alerts), NULL)
}

# POST a body to a method of the worker; the httpuv response list.
call_worker <- function(worker, method, body, content_type = "application/proto") {
  ns$handle_call(worker, "POST", paste0("/alertsidecar.v1.AlertWorker/", method),
                 list(content_type = content_type, protocol_version = "1", content_encoding = ""), body)
}

# The BatchResult of a batch answered by a worker, as a list of plain results.
answer <- function(worker, values, ...) {
  response <- call_worker(worker, "ProcessBatch", make_batch(values, ...))
  expect_equal(response$status, 200L)
  parsed <- RProtoBuf::read(cc$BatchResult, response$body)
  lapply(parsed$results, function(r) list(
    id = r$id, verdict = r$verdict, error = r$error,
    outputs = lapply(r$outputs, function(o) list(
      forward_input = o$forward_input, value = rawToChar(o$value), route = o$route,
      content_type = o$content_type, key = if (o$has("key")) rawToChar(o$key) else NULL))))
}

batch_worker <- function(fn, ...) ns$new_worker(fn, FALSE, "test", "1.0", NULL, NULL, 0, ...)
each_worker <- function(fn, routes = NULL) ns$new_worker(fn, TRUE, "test", "1.0", NULL, routes, 0)

OK <- 1
RETRY <- 2
DEAD_LETTER <- 3
