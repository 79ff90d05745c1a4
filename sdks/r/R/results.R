# What a filter may answer about an alert, and its encoding as the contract's
# AlertResult. The verdicts are the contract's: OK (with zero, one or several
# outputs), RETRY and DEAD_LETTER; anything the SDK cannot read as one of them
# becomes RETRY with an error that says what to return, as an unset verdict
# does in the contract, so that no alert is lost to a mistake.

#' Answers a filter gives about one alert
#'
#' A filter answers each alert with `TRUE` (keep it), `FALSE` (drop it), or
#' one of these:
#'
#' * `keep()`: OK, the input alert forwarded as it is (its bytes, key and
#'   headers), with extra `headers` and to `route` if given;
#' * `drop_alert()`: OK with no output;
#' * `retry(reason)`: RETRY; the sidecar sends the alert again after a backoff,
#'   then dead-letters it after its retry limit;
#' * `dead_letter(reason)`: DEAD_LETTER; the original alert goes to the
#'   dead-letter buffer with `reason`;
#' * `output(...)`, or a list of them: OK, one record produced per output (an
#'   empty `list()` drops the alert).
#'
#' @param reason One line for a person: logged by the sidecar and written into
#'   the dead-letter record's headers.
#' @param headers Headers to add to the record: a named character vector or
#'   named list of character strings or raw vectors. With `keep()` they follow
#'   the input alert's own headers.
#' @param route The output buffer: `""` for the default (`--out`), otherwise a
#'   route the worker declares in `serve(routes = ...)`.
#' @return An object of class `alertworker_result` (`output()`: class
#'   `alertworker_output`).
#' @name verdicts
#' @examples
#' keep()
#' drop_alert()
#' retry("the catalogue did not answer")
#' dead_letter("no diaSource")
#' output(list(diaObjectId = "1", score = 0.97), route = "scores")
NULL

#' @rdname verdicts
#' @export
keep <- function(headers = NULL, route = "") {
  result("OK", list(make_output(forward_input = TRUE, headers = headers, route = route)))
}

#' @rdname verdicts
#' @export
drop_alert <- function() result("OK", list())

#' @rdname verdicts
#' @export
retry <- function(reason) result("RETRY", error = reason_text(reason, "retry"))

#' @rdname verdicts
#' @export
dead_letter <- function(reason) result("DEAD_LETTER", error = reason_text(reason, "dead_letter"))

#' @rdname verdicts
#' @param value The record's value: a raw vector (sent as it is), a character
#'   string (sent as its UTF-8 bytes), or a list or one-row data frame (sent
#'   as a JSON object; see [to_json()]).
#' @param key The record's key, a character string or raw vector; `NULL` for none.
#' @param content_type What `value` holds, as a media type. By default
#'   `"application/json"` for a list or data frame, and
#'   `"application/octet-stream"` (bytes the sidecar knows nothing of) for raw
#'   and character values.
#' @export
output <- function(value, key = NULL, headers = NULL, route = "", content_type = NULL) {
  if (is.list(value)) {
    bytes <- charToRaw(enc2utf8(to_json(value)))
    content_type <- content_type %||% "application/json"
  } else if (is.raw(value)) {
    bytes <- value
  } else if (is.character(value) && length(value) == 1 && !is.na(value)) {
    bytes <- charToRaw(enc2utf8(value))
  } else {
    stop("output(value): value must be a raw vector, a character string, or a list or data frame ",
         "to write as JSON, not ", describe_value(value), call. = FALSE)
  }
  make_output(value = bytes, key = as_bytes(key, "key"), headers = headers, route = route,
              content_type = content_type %||% "application/octet-stream")
}

#' Write R values as JSON the way the SDK does
#'
#' `jsonlite::toJSON()` with single values written as scalars, all digits of
#' doubles, `NA` as `null`, and values marked with [json_integer()] written as
#' bare JSON integers. A one-row data frame is written as one object.
#'
#' @param x A list, a one-row data frame or an atomic vector.
#' @return A character string holding JSON.
#' @export
#' @examples
#' to_json(list(id = json_integer("1234567890123456789"), flux = 1e4, band = "r"))
to_json <- function(x) {
  if (is.data.frame(x) && nrow(x) == 1) x <- jsonlite::unbox(x)
  as.character(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, na = "null", null = "null",
                                json_verbatim = TRUE))
}

#' Mark 64-bit integers, read as strings, to be written back as JSON integers
#'
#' Alert ids such as `diaSourceId` need all 64 bits: the SDK reads them as
#' character strings so that none is rounded to a double. `json_integer()`
#' marks such strings so that [to_json()] and [output()] write them as JSON
#' integers, exactly, rather than as strings.
#'
#' @param x A character vector of integers written in decimal (a single value
#'   for a scalar).
#' @return `x` with class `json`, which `jsonlite` writes verbatim.
#' @export
#' @examples
#' to_json(list(alertId = json_integer("9223372036854775807")))
json_integer <- function(x) {
  x <- as.character(x)
  if (!all(grepl("^-?[0-9]+$", x))) {
    stop("json_integer(): every value must be an integer written in decimal digits", call. = FALSE)
  }
  structure(x, class = "json")
}

#' @export
print.alertworker_result <- function(x, ...) {
  outputs <- length(x$outputs)
  detail <- if (x$verdict == "OK") {
    if (outputs == 1 && isTRUE(x$outputs[[1]]$forward_input)) "the input forwarded"
    else paste(outputs, if (outputs == 1) "output" else "outputs")
  } else x$error
  cat("<alertworker result ", x$verdict, ": ", detail, ">\n", sep = "")
  invisible(x)
}

#' @export
print.alertworker_output <- function(x, ...) {
  what <- if (isTRUE(x$forward_input)) "the input forwarded" else
    paste0(length(x$value), " bytes of ", x$content_type)
  route <- if (nzchar(x$route)) paste0(" to route ", x$route) else ""
  cat("<alertworker output: ", what, route, ">\n", sep = "")
  invisible(x)
}

# -- internals -----------------------------------------------------------------

`%||%` <- function(a, b) if (is.null(a)) b else a

# Errors are one line for a person, logged and written into dead-letter
# headers; a runaway message must not make every dead-letter record huge.
MAX_ERROR_CHARS <- 2000L

one_line <- function(text) {
  line <- trimws(gsub("[[:space:]]+", " ", paste(text, collapse = " ")))
  if (nchar(line) > MAX_ERROR_CHARS) line <- paste0(substr(line, 1, MAX_ERROR_CHARS - 3), "...")
  line
}

reason_text <- function(reason, what) {
  if (missing(reason) || is.null(reason) || length(reason) == 0 || all(is.na(reason))) {
    return(paste0(what, "() was given no reason"))
  }
  one_line(as.character(reason))
}

result <- function(verdict, outputs = list(), error = "") {
  structure(list(verdict = verdict, outputs = outputs, error = error), class = "alertworker_result")
}

make_output <- function(value = raw(0), key = NULL, headers = NULL, route = "", content_type = "",
                        forward_input = FALSE) {
  if (!is.character(route) || length(route) != 1 || is.na(route)) {
    stop("route must be a character string (\"\" for the default output)", call. = FALSE)
  }
  structure(list(value = value, key = key, headers = header_list(headers), route = route,
                 content_type = content_type, forward_input = forward_input),
            class = "alertworker_output")
}

as_bytes <- function(x, what) {
  if (is.null(x) || is.raw(x)) return(x)
  if (is.character(x) && length(x) == 1) return(if (is.na(x)) NULL else charToRaw(enc2utf8(x)))
  stop(what, " must be a character string or a raw vector, not ", describe_value(x), call. = FALSE)
}

# Headers as a list of list(key, value = raw), in order (Kafka allows repeats).
header_list <- function(headers) {
  if (is.null(headers) || length(headers) == 0) return(list())
  names <- names(headers)
  if (is.null(names) || any(!nzchar(names))) {
    stop("headers must be named: c(name = \"value\", ...)", call. = FALSE)
  }
  lapply(seq_along(headers), function(i) list(key = names[[i]], value = as_bytes(headers[[i]], "a header value")))
}

describe_value <- function(x) {
  text <- paste(utils::capture.output(utils::str(x, max.level = 1, vec.len = 2, give.attr = FALSE)),
                collapse = " ")
  one_line(if (nchar(text) > 80) paste0(substr(text, 1, 77), "...") else text)
}

# The serialized AlertResult of a result, without its id (see contract()).
result_tail <- function(result) {
  cc <- contract()
  message <- RProtoBuf::new(cc$AlertResult, verdict = cc[[result$verdict]], error = result$error)
  if (result$verdict == "OK" && length(result$outputs)) {
    message$outputs <- lapply(result$outputs, output_message)
  }
  RProtoBuf::serialize(message, NULL)
}

output_message <- function(out) {
  cc <- contract()
  message <- RProtoBuf::new(cc$AlertOutput, route = out$route)
  if (isTRUE(out$forward_input)) {
    message$forward_input <- TRUE
  } else {
    message$value <- out$value
    message$content_type <- out$content_type
    if (!is.null(out$key)) message$key <- out$key
  }
  if (length(out$headers)) {
    message$headers <- lapply(out$headers, function(h) RProtoBuf::new(cc$Header, key = h$key, value = h$value))
  }
  message
}
