/**
 * The Java SDK of alert-sidecar: write a worker as a function of an {@link org.alertsidecar.worker.Alert}
 * and serve it to the sidecar with {@link org.alertsidecar.worker.AlertWorkerServer}.
 *
 * <pre>{@code
 * AlertWorkerServer.builder()
 *     .name("bright").version("1.0")
 *     .accepts(ContentTypes.AVRO_CONFLUENT)
 *     .processor(alert -> {
 *         GenericRecord source = (GenericRecord) alert.record().get("diaSource");
 *         Float flux = (Float) source.get("psfFlux");
 *         return flux != null && flux > 36_300 ? Result.forward() : Result.drop();
 *     })
 *     .build()
 *     .serve();
 * }</pre>
 *
 * <p>What a processor returns becomes the contract's verdict as {@link org.alertsidecar.worker.Result}
 * says; the contract's own classes (generated from {@code proto/alertsidecar/v1/worker.proto}) are in
 * {@code org.alertsidecar.v1}.
 */
package org.alertsidecar.worker;
