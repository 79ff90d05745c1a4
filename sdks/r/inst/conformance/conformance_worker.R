# The R SDK's conformance worker: tests/conformance/README.md says what each
# `op` of an alert must be answered with. Written only with the package's
# public API, as a user would; the sidecar starts it and sets ALERT_WORKER_PORT.

library(alertworker)

conformance <- function(alert) {
  op <- alert$op
  if (is.null(op)) op <- "<none>"
  switch(op,
    forward = TRUE,
    drop = FALSE,
    emit = lapply(alert$outputs, function(item) output(
      item$value,
      key = item$key,
      headers = item$headers,
      route = if (is.null(item$route)) "" else item$route,
      content_type = if (is.null(item$content_type)) "application/octet-stream" else item$content_type)),
    retry = if (is.null(alert$until_attempt) || alert$attempt < alert$until_attempt) {
      retry("retry requested")
    } else {
      keep()
    },
    dead_letter = dead_letter(alert$reason),
    fail = stop(alert$message),
    echo = output(list(
      id = alert$id,
      topic = alert$topic,
      partition = alert$partition,
      offset = json_integer(sprintf("%.0f", alert$offset)),
      key = alert$key,
      headers = alert$headers,
      attempt = alert$attempt,
      alert_id = json_integer(alert$alert_id)
    ), content_type = "application/json"),
    large = output(strrep("x", alert$size)),
    dead_letter(paste("unknown op:", op))
  )
}

# Plain lists (simplify = FALSE): an emit's headers keep their object's order.
serve_each(conformance, name = "conformance", version = "1.0", routes = "side", simplify = FALSE)
