package org.alertsidecar.examples.crossmatch;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.alertsidecar.worker.Alert;
import org.alertsidecar.worker.AvroAlerts;
import org.alertsidecar.worker.ContentTypes;
import org.alertsidecar.worker.DeadLetterException;
import org.alertsidecar.worker.Output;
import org.alertsidecar.worker.Result;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;

/**
 * The cross-match of one alert: its position, the catalogue sources around it, a class, and the JSON
 * annotation the worker produces.
 *
 * <p>Reads Rubin alerts (Avro in the Confluent wire format, or the sidecar's JSON form of them:
 * {@code diaSource.ra}, {@code diaSource.dec}, {@code diaSourceId}, {@code diaSource.diaObjectId}) and ZTF
 * alerts (an Avro container file, or its JSON form: {@code candidate.ra}, {@code candidate.dec},
 * {@code candid}, {@code objectId}).
 */
public final class Crossmatch {
    /** The header that carries the class, so that a stage downstream can route without parsing JSON. */
    public static final String CLASS_HEADER = "x-crossmatch-class";

    /**
     * The fields read from a Rubin alert: Avro skips every other one (the light curve, the cutouts), which
     * makes decoding an LSST-sized alert several times faster. {@code alertId} and {@code decl} are the
     * names of schemas before 7.0 and 5.0.
     */
    static final String[] RUBIN_FIELDS = {"diaSourceId", "alertId", "diaSource.ra", "diaSource.dec",
        "diaSource.decl", "diaSource.diaSourceId", "diaSource.diaObjectId"};

    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    private final SkyIndex index;
    private final double radiusArcsec;
    private final int maxMatches;
    private final ThreadLocal<Matches> buffers = ThreadLocal.withInitial(Matches::new);

    /**
     * A cross-match against an indexed catalogue.
     *
     * @param index the catalogue's index
     * @param radiusArcsec the search radius
     * @param maxMatches how many of the nearest sources an annotation lists
     */
    public Crossmatch(SkyIndex index, double radiusArcsec, int maxMatches) {
        this.index = index;
        this.radiusArcsec = radiusArcsec;
        this.maxMatches = maxMatches;
    }

    /** Where an alert is and what identifies it, as read from the alert. */
    record Target(double ra, double dec, String idName, JsonNode id, String objectName, JsonNode object) {
    }

    /**
     * Annotate one alert: the worker's processor.
     *
     * @param alert the alert
     * @return OK with one JSON output, or DEAD_LETTER for an alert without a position
     */
    public Result process(Alert alert) {
        Target target = target(alert);
        Matches matches = index.query(target.ra(), target.dec(), radiusArcsec, buffers.get());
        String classification = Classifier.classify(index.catalog(), matches);
        return Result.ok(Output.json(annotation(target, matches, classification))
                .header(CLASS_HEADER, classification));
    }

    ObjectNode annotation(Target target, Matches matches, String classification) {
        Catalog catalog = index.catalog();
        ObjectNode out = NODES.objectNode();
        out.set(target.idName(), target.id());
        out.set(target.objectName(), target.object());
        out.put("ra", target.ra());
        out.put("dec", target.dec());
        out.put("classification", classification);
        ArrayNode list = out.putArray("matches");
        for (int i = 0; i < Math.min(maxMatches, matches.size()); i++) {
            int row = matches.row(i);
            list.addObject()
                    .put("name", catalog.name(row))
                    .put("type", catalog.type(row).label())
                    .put("ra", catalog.ra(row))
                    .put("dec", catalog.dec(row))
                    .put("separation_arcsec", matches.separationArcsec(i));
        }
        return out;
    }

    static Target target(Alert alert) {
        String kind = ContentTypes.mediaType(alert.contentType());
        if (ContentTypes.AVRO_CONFLUENT.equals(kind)) {
            Schema writer = alert.writerSchema(AvroAlerts.schemaId(alert.value()));
            return fromAvro(alert.record(AvroAlerts.projection(writer, RUBIN_FIELDS)), alert);
        }
        if (ContentTypes.AVRO_OCF.equals(kind)) {
            return fromAvro(alert.record(), alert);
        }
        return fromJson(alert.json(), alert);
    }

    static Target fromAvro(GenericRecord record, Alert alert) {
        if (record.hasField("diaSource")) {
            GenericRecord source = (GenericRecord) record.get("diaSource");
            if (source == null) {
                throw new DeadLetterException("alert " + alert.id() + " has no diaSource: nothing to cross-match");
            }
            Object id = record.hasField("diaSourceId") ? record.get("diaSourceId")
                    : record.hasField("alertId") ? record.get("alertId") : source.get("diaSourceId");
            Object object = source.hasField("diaObjectId") ? source.get("diaObjectId") : null;
            Object dec = source.hasField("dec") ? source.get("dec") : source.get("decl");
            return new Target(degrees(source.get("ra"), "diaSource.ra", alert), degrees(dec, "diaSource.dec", alert),
                    "diaSourceId", longNode(id), "diaObjectId", longNode(object));
        }
        if (record.hasField("candidate")) {
            GenericRecord candidate = (GenericRecord) record.get("candidate");
            return new Target(degrees(candidate.get("ra"), "candidate.ra", alert),
                    degrees(candidate.get("dec"), "candidate.dec", alert), "candid", longNode(record.get("candid")),
                    "objectId", record.get("objectId") == null ? NODES.nullNode()
                            : NODES.textNode(record.get("objectId").toString()));
        }
        throw new DeadLetterException("alert " + alert.id() + " is neither a Rubin alert (diaSource) nor a ZTF alert "
                + "(candidate): nothing to cross-match");
    }

    static Target fromJson(JsonNode json, Alert alert) {
        JsonNode source = json.path("diaSource");
        if (source.isObject()) {
            JsonNode id = json.has("diaSourceId") ? json.get("diaSourceId") : source.path("diaSourceId");
            JsonNode dec = source.has("dec") ? source.get("dec") : source.path("decl");
            return new Target(degrees(source.path("ra"), "diaSource.ra", alert), degrees(dec, "diaSource.dec", alert),
                    "diaSourceId", id.isMissingNode() ? NODES.nullNode() : id,
                    "diaObjectId", source.path("diaObjectId").isMissingNode() ? NODES.nullNode() : source.get("diaObjectId"));
        }
        JsonNode candidate = json.path("candidate");
        if (candidate.isObject()) {
            return new Target(degrees(candidate.path("ra"), "candidate.ra", alert),
                    degrees(candidate.path("dec"), "candidate.dec", alert), "candid",
                    json.path("candid").isMissingNode() ? NODES.nullNode() : json.get("candid"), "objectId",
                    json.path("objectId").isMissingNode() ? NODES.nullNode() : json.get("objectId"));
        }
        throw new DeadLetterException("alert " + alert.id() + " has neither diaSource nor candidate: nothing to "
                + "cross-match");
    }

    private static double degrees(Object value, String field, Alert alert) {
        double degrees;
        if (value instanceof Number number) {
            degrees = number.doubleValue();
        } else if (value instanceof JsonNode node && node.isNumber()) {
            degrees = node.asDouble();
        } else {
            throw new DeadLetterException("alert " + alert.id() + " has no " + field + " (" + value + "): nothing to "
                    + "cross-match");
        }
        if (!Double.isFinite(degrees)) {
            throw new DeadLetterException("alert " + alert.id() + " has " + field + " = " + degrees);
        }
        return degrees;
    }

    private static JsonNode longNode(Object value) {
        return value instanceof Number number ? NODES.numberNode(number.longValue()) : NODES.nullNode();
    }
}
