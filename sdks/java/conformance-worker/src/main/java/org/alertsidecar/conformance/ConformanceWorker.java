package org.alertsidecar.conformance;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.alertsidecar.worker.Alert;
import org.alertsidecar.worker.AlertWorkerServer;
import org.alertsidecar.worker.ContentTypes;
import org.alertsidecar.worker.DeadLetterException;
import org.alertsidecar.worker.Header;
import org.alertsidecar.worker.Output;
import org.alertsidecar.worker.Result;
import org.alertsidecar.worker.RetryException;

/**
 * The Java conformance worker: the command language of {@code tests/conformance/README.md}, written only
 * with the SDK's public API, as a user would write a worker. Each alert is a JSON object whose {@code op}
 * says what to answer; the driver ({@code tests/conformance/driver.py}) checks what the sidecar made of
 * it. Started by the sidecar, it listens on {@code $ALERT_WORKER_PORT}.
 */
public final class ConformanceWorker {
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private ConformanceWorker() {
    }

    /**
     * Answer one alert as its {@code op} says.
     *
     * @param alert the alert, a JSON command
     * @return the answer the README's table gives
     */
    public static Result answer(Alert alert) {
        JsonNode command = alert.json();
        String op = command.path("op").asText(null);
        if (op == null) {
            throw new DeadLetterException("unknown op: " + command.get("op"));
        }
        switch (op) {
            case "forward":
                return Result.forward();
            case "drop":
                return Result.drop();
            case "emit":
                return Result.ok(emit(command.path("outputs")));
            case "retry":
                JsonNode until = command.get("until_attempt");
                if (until == null || until.isNull() || alert.attempt() < until.asLong()) {
                    throw new RetryException("retry requested");
                }
                return Result.forward();
            case "dead_letter":
                throw new DeadLetterException(command.path("reason").asText());
            case "fail":
                // An ordinary error: the SDK answers RETRY with its message.
                throw new IllegalStateException(command.path("message").asText());
            case "echo":
                return Result.ok(Output.json(echo(alert, command)));
            case "large":
                byte[] large = new byte[command.path("size").asInt()];
                Arrays.fill(large, (byte) 'x');
                return Result.ok(Output.of(large));
            default:
                throw new DeadLetterException("unknown op: " + op);
        }
    }

    private static List<Output> emit(JsonNode items) {
        List<Output> outputs = new ArrayList<>();
        for (JsonNode item : items) {
            Output output = Output.of(item.path("value").asText().getBytes(StandardCharsets.UTF_8))
                    .contentType(item.has("content_type") ? item.get("content_type").asText() : ContentTypes.OCTET_STREAM);
            if (item.hasNonNull("key")) {
                output = output.key(item.get("key").asText());
            }
            Iterator<Map.Entry<String, JsonNode>> headers = item.path("headers").fields();
            while (headers.hasNext()) {
                Map.Entry<String, JsonNode> header = headers.next();
                output = output.header(header.getKey(), header.getValue().asText());
            }
            if (item.has("route")) {
                output = output.route(item.get("route").asText());
            }
            outputs.add(output);
        }
        return outputs;
    }

    private static ObjectNode echo(Alert alert, JsonNode command) {
        ObjectNode echo = NODES.objectNode();
        echo.put("id", alert.id());
        echo.put("topic", alert.topic());
        echo.put("partition", alert.partition());
        echo.put("offset", alert.offset());
        echo.put("key", alert.key().map(key -> new String(key, StandardCharsets.UTF_8)).orElse(null));
        ObjectNode headers = echo.putObject("headers");
        for (Header header : alert.headers()) {
            headers.put(header.name(), header.valueAsString());
        }
        echo.put("attempt", alert.attempt());
        // The node as parsed: a long, or a BigInteger past 64 bits, never a double.
        echo.set("alert_id", command.get("alert_id"));
        return echo;
    }

    /**
     * Serve the conformance worker on {@code $ALERT_WORKER_PORT} until SIGTERM.
     *
     * @param args none
     */
    public static void main(String[] args) {
        AlertWorkerServer.builder()
                .name("conformance")
                .version("1.0.0")
                .accepts(ContentTypes.JSON)
                .routes("side")
                .processor(ConformanceWorker::answer)
                .build()
                .serve();
    }
}
