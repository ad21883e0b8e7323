/**
 * Moved: the gateway's metrics belong to the core (gateway/metrics/index.ts, issue #21);
 * admin/ only serves the registry at /metrics. This re-export keeps broker/listeners.ts and
 * broker/security.ts building until their imports move (they were under audit when the
 * registry moved). Import gateway/metrics/index.ts in new code.
 */
export { Metrics, INTAKE_OUTCOMES, type IntakeOutcome } from '../metrics/index.ts'
