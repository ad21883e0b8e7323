/** Matching a topic against a mapping's pattern (MQTT filter syntax with named `+name` segments). */
export type Matcher = (topic: string) => Record<string, string> | null

export function compileTopic (pattern: string): Matcher {
  const segs = pattern.split('/')
  const multi = segs[segs.length - 1] === '#'
  const fixed = multi ? segs.slice(0, -1) : segs
  return (topic) => {
    const parts = topic.split('/')
    if (multi ? parts.length < fixed.length : parts.length !== fixed.length) return null
    const named: Record<string, string> = {}
    for (let i = 0; i < fixed.length; i++) {
      const s = fixed[i]!
      const p = parts[i]!
      if (s.startsWith('+')) {
        if (p === '') return null
        if (s.length > 1) named[s.slice(1)] = p
      } else if (s !== p) {
        return null
      }
    }
    return named
  }
}

/** Fills `{name}` placeholders from the named segments. */
export function fill (template: string, named: Record<string, string>): string {
  return template.replace(/\{([^}]*)\}/g, (_m, n: string) => named[n] ?? '')
}
