import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PacketScanner } from '../../gateway/broker/guard.ts'

const publish = (bodyLen: number): Buffer => {
  const len: number[] = []
  let n = bodyLen
  do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 128; len.push(b) } while (n > 0)
  return Buffer.concat([Buffer.from([0x32, ...len]), Buffer.alloc(bodyLen, 1)])
}

test('packets up to the limit pass, across arbitrary chunk boundaries', () => {
  const stream = Buffer.concat([publish(10), publish(1000), Buffer.from([0xc0, 0x00]), publish(65536)])
  for (const chunk of [1, 2, 3, 7, 100, stream.length]) {
    const s = new PacketScanner(65536)
    for (let i = 0; i < stream.length; i += chunk) assert.equal(s.scan(stream.subarray(i, i + chunk)), null, `chunk ${chunk}`)
  }
})

test('a packet declaring more than the limit is refused as soon as its header is complete', () => {
  const s = new PacketScanner(65536)
  assert.equal(s.scan(publish(100)), null)
  // header only: no body bytes needed to refuse it
  assert.match(s.scan(Buffer.from([0x32, 0x81, 0x80, 0x04]))!, /65537 bytes exceeds maxPacketBytes 65536/)
})

test('a header split byte by byte is still read correctly', () => {
  const s = new PacketScanner(100)
  assert.equal(s.scan(Buffer.from([0x32])), null)
  assert.equal(s.scan(Buffer.from([0x80 | 1])), null)
  assert.match(s.scan(Buffer.from([0x01]))!, /129 bytes/)
})

test('a remaining length of more than 4 bytes is malformed', () => {
  const s = new PacketScanner(1 << 30)
  assert.match(s.scan(Buffer.from([0x32, 0xff, 0xff, 0xff, 0xff, 0x01]))!, /malformed/)
})
