/** Test PKI (CA, device/gateway/server certificates) made at run time with openssl: see bench/lib/certs.ts. */
export { makeCa, makeCert, installPem, type Ca, type Pem } from '../../bench/lib/certs.ts'
