test_that("a logical vector keeps, drops and retries each alert", {
  worker <- batch_worker(function(alerts) alerts$flux > 10)
  results <- answer(worker, c('{"flux": 20}', '{"flux": 5}', '{"flux": null}'))
  expect_equal(vapply(results, `[[`, "", "id"), c("alerts/0/0", "alerts/0/1", "alerts/0/2"))
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(OK, OK, RETRY))
  expect_true(results[[1]]$outputs[[1]]$forward_input)
  expect_length(results[[2]]$outputs, 0)
  expect_match(results[[3]]$error, "answered NA")
})

test_that("the batch id is echoed exactly, all 64 bits", {
  worker <- batch_worker(function(alerts) rep(TRUE, nrow(alerts)))
  response <- call_worker(worker, "ProcessBatch", make_batch('{}', batch_id = "18446744073709551615"))
  old <- options(RProtoBuf.int64AsString = TRUE)
  on.exit(options(old))
  expect_equal(RProtoBuf::read(cc$BatchResult, response$body)$batch_id, "18446744073709551615")
})

test_that("64-bit ids reach the filter as exact strings", {
  seen <- NULL
  worker <- batch_worker(function(alerts) { seen <<- alerts$diaSource.diaSourceId; rep(TRUE, nrow(alerts)) })
  answer(worker, c('{"diaSource": {"diaSourceId": 9223372036854775807}}',
                   '{"diaSource": {"diaSourceId": 144116287587483648}}'))
  expect_identical(seen, c("9223372036854775807", "144116287587483648"))
})

test_that("the filter sees metadata columns, flattened records and arrays of records as data frames", {
  seen <- NULL
  worker <- batch_worker(function(alerts) { seen <<- alerts; rep(TRUE, nrow(alerts)) })
  answer(worker, c('{"diaSource": {"psfFlux": 1.5, "band": "r"}, "prvDiaSources": [{"psfFlux": 1}, {"psfFlux": 2}]}',
                   '{"diaSource": {"psfFlux": 2.5, "band": "g"}, "prvDiaSources": []}'),
         keys = c("obj-1", NA), attempts = 2)
  expect_equal(seen$id, c("alerts/0/0", "alerts/0/1"))
  expect_equal(seen$offset, c(0, 1))
  expect_equal(seen$key, c("obj-1", NA))
  expect_equal(seen$attempt, c(2L, 2L))
  expect_equal(seen$diaSource.psfFlux, c(1.5, 2.5))
  expect_equal(seen$diaSource.band, c("r", "g"))
  expect_equal(seen$prvDiaSources[[1]]$psfFlux, c(1, 2))
  expect_equal(nrow(seen$prvDiaSources[[2]]), 0)
})

test_that("a field named as a metadata column is renamed value.<name>", {
  seen <- NULL
  worker <- batch_worker(function(alerts) { seen <<- alerts; TRUE })
  answer(worker, '{"id": 7, "topic": "mine"}')
  expect_equal(seen$id, "alerts/0/0")
  expect_equal(seen$value.id, 7L)
  expect_equal(seen$value.topic, "mine")
})

test_that("a list answers each alert with keep, drop, retry, dead_letter or outputs", {
  worker <- batch_worker(function(alerts) list(
    keep(), drop_alert(), retry("later"), dead_letter("never"),
    output(list(score = 0.5, id = json_integer("9223372036854775807")), key = "k"),
    list(output("a"), output(as.raw(1:3), content_type = "application/x-test")), FALSE))
  results <- answer(worker, rep('{}', 7))
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(OK, OK, RETRY, DEAD_LETTER, OK, OK, OK))
  expect_equal(results[[3]]$error, "later")
  expect_equal(results[[4]]$error, "never")
  expect_equal(results[[5]]$outputs[[1]]$value, '{"score":0.5,"id":9223372036854775807}')
  expect_equal(results[[5]]$outputs[[1]]$content_type, "application/json")
  expect_equal(results[[5]]$outputs[[1]]$key, "k")
  expect_equal(vapply(results[[6]]$outputs, `[[`, "", "content_type"),
               c("application/octet-stream", "application/x-test"))
  expect_length(results[[7]]$outputs, 0)
})

test_that("a data frame of outputs produces its rows for the alerts it names and drops the others", {
  worker <- batch_worker(function(alerts) data.frame(alert = c(1, 1, 3), score = c(0.1, 0.2, 0.3)))
  results <- answer(worker, rep('{}', 3))
  expect_equal(vapply(results, function(r) length(r$outputs), 0L), c(2L, 0L, 1L))
  expect_equal(results[[1]]$outputs[[2]]$value, '{"score":0.2}')
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(OK, OK, OK))
})

test_that("a data frame of outputs may name alerts by id and give values, keys and routes", {
  worker <- ns$new_worker(function(alerts) data.frame(alert = "alerts/0/1", value = "text", key = "k",
                                                      route = "side"),
                          FALSE, "test", "1.0", NULL, "side", 0)
  results <- answer(worker, rep('{}', 2))
  out <- results[[2]]$outputs[[1]]
  expect_equal(c(out$value, out$key, out$route), c("text", "k", "side"))
  expect_length(results[[1]]$outputs, 0)
})

test_that("an error in the filter retries every alert of the batch with its message", {
  worker <- batch_worker(function(alerts) stop("catalogue unreachable"))
  results <- expect_output(answer(worker, rep('{}', 2)), NA)
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(RETRY, RETRY))
  expect_match(results[[1]]$error, "catalogue unreachable")
})

test_that("an answer of the wrong length or kind retries with a message saying what to return", {
  results <- answer(batch_worker(function(alerts) c(TRUE, FALSE, TRUE)), rep('{}', 2))
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(RETRY, RETRY))
  expect_match(results[[1]]$error, "3 values for 2 alerts")
  results <- answer(batch_worker(function(alerts) "yes"), rep('{}', 2))
  expect_match(results[[1]]$error, "logical vector")
  results <- answer(batch_worker(function(alerts) list(NULL, 42)), rep('{}', 2))
  expect_match(results[[1]]$error, "NULL")
  expect_match(results[[2]]$error, "answered num 42")
})

test_that("an alert whose value is not a JSON object is dead-lettered alone", {
  worker <- batch_worker(function(alerts) rep(TRUE, nrow(alerts)))
  results <- answer(worker, c('{"a": 1}', 'not json', '{"a": ', '[1, 2]', '{"a": 2}'))
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(OK, DEAD_LETTER, DEAD_LETTER, DEAD_LETTER, OK))
  expect_match(results[[3]]$error, "not valid JSON")
})

test_that("an output to an undeclared route dead-letters its alert with what to do", {
  worker <- batch_worker(function(alerts) list(keep(route = "nowhere")))
  results <- answer(worker, '{}')
  expect_equal(results[[1]]$verdict, DEAD_LETTER)
  expect_match(results[[1]]$error, "--route nowhere=BUFFER")
})

test_that("a per-alert filter gets each alert as a list and fails alone", {
  worker <- each_worker(function(alert) {
    if (alert$op == "fail") stop("bad alert")
    alert$op == "keep"
  })
  results <- answer(worker, c('{"op": "keep"}', '{"op": "fail"}', '{"op": "drop"}'))
  expect_equal(vapply(results, `[[`, 0, "verdict"), c(OK, RETRY, OK))
  expect_length(results[[1]]$outputs, 1)
  expect_length(results[[3]]$outputs, 0)
})
