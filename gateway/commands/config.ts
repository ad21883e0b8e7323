/**
 * Commands to devices: the gateway flags (docs/commands.md "At the gateway"); the gateway's
 * schema spreads this one.
 */
export const commandsSchema = {
  commands: { type: 'enum', values: ['on', 'off'] as const, default: 'on', doc: 'Commands to devices (docs/commands.md): with an upstream configured, take commands from the ingest, deliver them to devices and report their states' },
  commandsMaxHeld: { type: 'int', default: 10_000, min: 1, max: 10_000_000, doc: 'Commands held at most (not yet finished or not yet reported); past it new commands are not taken (the ingest offers them again later)' },
  commandsMaxPerDevice: { type: 'int', default: 100, min: 1, max: 100_000, doc: 'Unfinished commands held at most per device; past it that device\'s new commands are not taken (offered again later)' },
  commandReportsMax: { type: 'int', default: 500, min: 1, max: 10_000, doc: 'State changes and presence entries per reports request to the ingest' }
} as const
