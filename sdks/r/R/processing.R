# The SDK's core: a batch of the contract's alerts in, the filter run once,
# the contract's results out. The Connect server (serve.R) and try_filter()
# both go through here, so a filter answers the sidecar as it answers a file.
#
# Costs that decide the shape of this file: parsing is what an R worker spends
# its time on (`python examples/r/measure_connect.py` beside
# `Rscript examples/r/noop.R 1`, then both with whole alerts, `--whole` and
# `1 whole`: a batch's time grows with the JSON it parses, 2,374 alerts/s of
# 3.4 KB against 106 of 85 KB on two cores), so the alerts' JSON values are
# pasted into one JSON array and parsed by one jsonlite call per batch, and the
# common answers (keep, drop) are encoded from bytes made once per process.

# Metadata columns of the alerts data frame, before the alert's own fields.
META_COLUMNS <- c("id", "topic", "partition", "offset", "timestamp_ms", "key", "headers", "attempt",
                  "schema_id")

# -- the worker ------------------------------------------------------------------

new_worker <- function(fn, per_alert, name, version, fields, routes, batch_size, simplify = TRUE) {
  if (!is.function(fn)) stop("the filter must be a function, not ", describe_value(fn), call. = FALSE)
  check_strings <- function(x, what) {
    if (is.null(x)) return(character(0))
    if (!is.character(x) || anyNA(x)) stop(what, " must be a character vector", call. = FALSE)
    x
  }
  fields <- check_strings(fields, "fields")
  routes <- check_strings(routes, "routes")
  bad <- fields[!grepl("^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$", fields)]
  if (length(bad)) {
    stop("fields lists \"", bad[[1]], "\", which is not a dotted path of field names like ",
         "\"diaSource.psfFlux\"", call. = FALSE)
  }
  if (anyDuplicated(fields)) stop("fields repeats a path", call. = FALSE)
  if (any(!nzchar(routes))) {
    stop("routes lists extra route names; the default route \"\" is always there", call. = FALSE)
  }
  if (anyDuplicated(routes)) stop("routes repeats a name", call. = FALSE)
  if (!is.numeric(batch_size) || length(batch_size) != 1 || is.na(batch_size) || batch_size < 0 ||
      batch_size != round(batch_size) || batch_size > 2^32 - 1) {
    stop("batch_size must be a whole number from 0 (the sidecar chooses) up", call. = FALSE)
  }
  structure(list(fn = fn, per_alert = per_alert, name = as.character(name), version = as.character(version),
                 fields = fields, routes = routes, batch_size = batch_size, simplify = isTRUE(simplify),
                 answers = new.env()),
            class = "alertworker_worker")
}

# The answers every batch reuses, with their encoding made once.
common_answers <- function(worker) {
  answers <- worker$answers
  if (is.null(answers$KEEP)) {
    with_tail <- function(r) { r$tail <- result_tail(r); r }
    answers$KEEP <- with_tail(keep())
    answers$DROP <- with_tail(drop_alert())
    answers$NA_RETRY <- with_tail(retry(paste(
      "the filter answered NA for this alert; answer TRUE to keep it, FALSE to drop it, or",
      "retry(reason) to have it sent again")))
  }
  answers
}

describe_worker <- function(worker) {
  cc <- contract()
  RProtoBuf::new(cc$WorkerDescription,
                 name = worker$name, version = worker$version,
                 protocol_version = cc$PROTOCOL_VERSION_1,
                 accepts = "application/json",
                 preferred_batch_size = worker$batch_size,
                 routes = worker$routes,
                 sdk = paste0("r/alertworker ", utils::packageVersion("alertworker")),
                 fields = worker$fields)
}

# -- alerts in -------------------------------------------------------------------

# A named empty list, which to_json() writes as {} (an unnamed one is []).
NO_HEADERS <- stats::setNames(list(), character(0))

# The metadata columns and JSON texts of the contract's Alert messages.
alerts_of_messages <- function(messages) {
  fields <- lapply(messages, as.list)
  column <- function(name, type) vapply(fields, function(f) f[[name]], type, USE.NAMES = FALSE)
  keys <- lapply(seq_along(fields), function(i) {
    key <- fields[[i]]$key
    # proto3 `optional`: an empty key and no key differ only in has().
    if (length(key) == 0 && !messages[[i]]$has("key")) NULL else key
  })
  headers <- lapply(fields, function(f) {
    if (!length(f$headers)) return(NO_HEADERS)
    pairs <- lapply(f$headers, as.list)
    stats::setNames(lapply(pairs, function(p) text_or_raw(p$value)), vapply(pairs, `[[`, "", "key"))
  })
  list(
    meta = list(
      id = column("id", ""),
      topic = column("topic", ""),
      partition = as.integer(column("partition", 0L)),
      offset = column("offset", 0),
      timestamp_ms = column("timestamp_ms", 0),
      key = vapply(keys, key_text, "", USE.NAMES = FALSE),
      headers = headers,
      attempt = as.integer(column("attempt", 0)),
      schema_id = as.integer(column("schema_id", 0))
    ),
    values = lapply(fields, `[[`, "value")
  )
}

# A key as text; NA for none and for keys that are not UTF-8 text.
key_text <- function(key) {
  text <- text_or_raw(key)
  if (is.null(key) || !is.character(text)) NA_character_ else text
}

text_or_raw <- function(bytes) {
  if (is.null(bytes) || !length(bytes)) return("")
  if (any(bytes == as.raw(0))) return(bytes)
  text <- rawToChar(bytes)
  if (!validUTF8(text)) return(bytes)
  Encoding(text) <- "UTF-8"
  text
}

# Parse the alerts' JSON values: one jsonlite call for the batch. Returns the
# parsed fields of the good alerts (a data frame, or a list of per-alert lists
# for the per-alert form) and, for the others, why they cannot be read.
parse_values <- function(values, per_alert, simplify = TRUE) {
  n <- length(values)
  problems <- rep(NA_character_, n)
  texts <- vapply(values, function(v) {
    text <- text_or_raw(v)
    if (is.character(text)) text else NA_character_
  }, "", USE.NAMES = FALSE)
  problems[is.na(texts)] <- "the alert's value is not UTF-8 text"
  objects <- !is.na(texts) & grepl("^[[:space:]]*\\{", texts)
  problems[is.na(problems) & !objects] <- "the alert's value is not a JSON object"
  good <- which(is.na(problems))
  parsed <- NULL
  if (length(good) && !per_alert) {
    parsed <- tryCatch(parse_array(texts[good]), error = function(e) NULL)
    if (is.null(parsed)) {
      # One bad alert must not fail the others: find it, then parse the rest.
      valid <- vapply(texts[good], jsonlite::validate, TRUE, USE.NAMES = FALSE)
      problems[good[!valid]] <- paste("the alert's value is not valid JSON:",
        vapply(texts[good[!valid]], function(t) one_line(attr(jsonlite::validate(t), "err")), ""))
      good <- good[valid]
      if (length(good)) parsed <- parse_array(texts[good])
    }
  } else if (length(good)) {
    parsed <- lapply(texts[good], function(t) tryCatch(
      jsonlite::fromJSON(t, simplifyVector = simplify, bigint_as_char = TRUE),
      error = function(e) structure(one_line(conditionMessage(e)), class = "parse_error")))
    failed <- vapply(parsed, inherits, TRUE, "parse_error")
    problems[good[failed]] <- paste("the alert's value is not valid JSON:", unlist(parsed[failed]))
    parsed <- parsed[!failed]
    good <- good[!failed]
  }
  list(good = good, parsed = parsed, problems = problems)
}

parse_array <- function(texts) {
  records <- jsonlite::parse_json(paste0("[", paste(texts, collapse = ","), "]"), bigint_as_char = TRUE)
  columns <- tryCatch(record_columns(records), error = function(e) NULL)
  if (is.null(columns)) {
    # Records too irregular for the fast path (see columns.R): jsonlite's own simplification.
    return(jsonlite::fromJSON(paste0("[", paste(texts, collapse = ","), "]"), bigint_as_char = TRUE,
                              flatten = TRUE))
  }
  structure(columns, class = "data.frame", row.names = c(NA, -length(records)))
}

# The alerts' fields after the metadata; a field named as a metadata column
# is renamed "value.<name>" (the field of the alert's value).
merge_fields <- function(meta, fields) {
  clash <- names(fields) %in% META_COLUMNS
  names(fields)[clash] <- paste0("value.", names(fields)[clash])
  c(meta, fields)
}

alerts_frame <- function(meta, parsed, rows) {
  columns <- merge_fields(lapply(meta, `[`, rows), as.list(parsed))
  structure(columns, class = "data.frame", row.names = c(NA, -length(rows)))
}

alert_list <- function(meta, parsed_one, row) {
  one <- lapply(meta, `[[`, row)
  if (is.null(one$headers)) one$headers <- NO_HEADERS
  merge_fields(one, if (is.list(parsed_one)) parsed_one else list(value = parsed_one))
}

# -- the filter run ----------------------------------------------------------------

# One result object per alert, in order.
decide <- function(worker, meta, values) {
  answers <- common_answers(worker)
  n <- length(values)
  results <- vector("list", n)
  parsed <- parse_values(values, worker$per_alert, worker$simplify)
  bad <- which(!is.na(parsed$problems))
  for (i in bad) results[[i]] <- dead_letter(parsed$problems[[i]])
  good <- parsed$good
  if (!length(good)) return(results)
  where <- sprintf("a batch of %d alerts from %s", length(good), meta$id[[good[[1]]]])
  if (worker$per_alert) {
    for (k in seq_along(good)) {
      i <- good[[k]]
      alert <- alert_list(meta, parsed$parsed[[k]], i)
      results[[i]] <- tryCatch(
        answer_of_item(worker, worker$fn(alert), answers),
        error = function(e) filter_failed(worker, e, paste("alert", meta$id[[i]])))
    }
  } else {
    frame <- alerts_frame(meta, parsed$parsed, good)
    results[good] <- tryCatch(
      answers_of_batch(worker, worker$fn(frame), frame, answers),
      error = function(e) rep(list(filter_failed(worker, e, where)), length(good)))
  }
  lapply(results, checked_routes, worker = worker)
}

filter_failed <- function(worker, error, where) {
  text <- one_line(paste0("the filter failed: ", conditionMessage(error)))
  log_line("worker ", worker$name, ", ", where, ": ", text)
  retry(text)
}

answers_of_batch <- function(worker, answer, frame, answers) {
  n <- nrow(frame)
  if (is.logical(answer) && is.null(dim(answer)) && length(answer) == n) {
    return(list(answers$KEEP, answers$DROP, answers$NA_RETRY)[ifelse(is.na(answer), 3L, ifelse(answer, 1L, 2L))])
  }
  if (is.data.frame(answer)) return(outputs_of_frame(answer, frame, answers))
  if (is.list(answer) && !inherits(answer, c("alertworker_result", "alertworker_output")) &&
      length(answer) == n) {
    return(lapply(answer, answer_of_item, worker = worker, answers = answers))
  }
  problem <- if ((is.logical(answer) || is.list(answer)) && length(answer) != n) {
    sprintf("answered %d values for %d alerts; answer exactly one per alert, in order", length(answer), n)
  } else {
    paste0("answered ", describe_value(answer), "; answer a logical vector with one value per alert ",
           "(TRUE keep, FALSE drop), a data frame of outputs with an `alert` column, or a list with ",
           "one answer per alert")
  }
  stop(problem, call. = FALSE)
}

answer_of_item <- function(worker, item, answers) {
  if (is.logical(item) && length(item) == 1 && is.null(dim(item))) {
    return(if (is.na(item)) answers$NA_RETRY else if (item) answers$KEEP else answers$DROP)
  }
  if (inherits(item, "alertworker_result")) return(item)
  if (inherits(item, "alertworker_output")) return(result("OK", list(item)))
  if (is.list(item) && !is.data.frame(item) && all(vapply(item, inherits, TRUE, "alertworker_output"))) {
    return(result("OK", unname(item)))
  }
  why <- if (is.null(item)) {
    "answered NULL; did the function end without a value?"
  } else {
    paste("answered", describe_value(item))
  }
  retry(paste(why, "- answer TRUE to keep the alert, FALSE to drop it, output(...) or a list of them,",
              "keep(), drop_alert(), retry(reason) or dead_letter(reason)"))
}

# A data frame of outputs: one row per record to produce, `alert` naming the
# alert by row number or id; alerts it does not name are dropped.
outputs_of_frame <- function(outputs, frame, answers) {
  n <- nrow(frame)
  if (!"alert" %in% names(outputs)) {
    stop("answered a data frame without an `alert` column; a data frame answer has one row per ",
         "output and names its alert in `alert` (row number or id)", call. = FALSE)
  }
  which_alert <- outputs$alert
  rows <- if (is.character(which_alert)) match(which_alert, frame$id) else as.integer(which_alert)
  if (anyNA(rows) || any(rows < 1 | rows > n)) {
    stop("the outputs' `alert` column names an alert that is not in the batch: ",
         utils::head(which_alert[is.na(rows) | rows < 1 | rows > n], 1), call. = FALSE)
  }
  special <- c("alert", "value", "key", "route", "content_type")
  has <- function(name) name %in% names(outputs)
  if (has("value")) {
    values <- outputs$value
  } else {
    data <- outputs[, setdiff(names(outputs), special), drop = FALSE]
    values <- lapply(seq_len(nrow(data)), function(i) data[i, , drop = FALSE])
  }
  column <- function(name, default) if (has(name)) outputs[[name]] else rep(default, nrow(outputs))
  keys <- column("key", NA_character_)
  routes <- column("route", "")
  types <- column("content_type", NA_character_)
  made <- lapply(seq_len(nrow(outputs)), function(k) {
    key <- keys[[k]]
    output(values[[k]], key = if (length(key) == 1 && is.na(key)) NULL else key,
           route = if (is.na(routes[[k]])) "" else routes[[k]],
           content_type = if (is.na(types[[k]])) NULL else types[[k]])
  })
  results <- rep(list(answers$DROP), n)
  for (row in unique(rows)) results[[row]] <- result("OK", made[rows == row])
  results
}

# The result as the sidecar will act on it: outputs only with OK, and only to
# routes the worker declared (an undeclared route would dead-letter the alert
# in the sidecar; say why here, where the author looks).
checked_routes <- function(result, worker) {
  if (result$verdict != "OK" || !length(result$outputs)) return(result)
  for (out in result$outputs) {
    if (nzchar(out$route) && !out$route %in% worker$routes) {
      return(dead_letter(sprintf(paste(
        "worker %s produced an output for route \"%s\", which it does not declare (routes: %s);",
        "add it to serve(routes = ...) and bind it with --route %s=BUFFER"),
        worker$name, out$route, paste(worker$routes, collapse = ", "), out$route)))
    }
  }
  result
}

# -- results out -------------------------------------------------------------------

encode_result <- function(id, result) {
  cc <- contract()
  id_bytes <- charToRaw(id)
  c(cc$result_id_tag, varint(length(id_bytes)), id_bytes, result$tail %||% result_tail(result))
}

encode_batch_result <- function(batch_id, ids, results) {
  cc <- contract()
  head <- RProtoBuf::serialize(RProtoBuf::new(cc$BatchResult, batch_id = batch_id), NULL)
  body <- lapply(seq_along(ids), function(i) {
    one <- encode_result(ids[[i]], results[[i]])
    c(cc$batch_results_tag, varint(length(one)), one)
  })
  c(head, unlist(body, use.names = FALSE))
}

log_line <- function(...) {
  # One string, one write: the processes of serve(processes = n) share stderr, and
  # cat() of several pieces would let their lines interleave mid-line.
  line <- paste0(format(Sys.time(), "%Y-%m-%d %H:%M:%S"), " alertworker ", ..., "\n")
  cat(line, file = stderr())
}
