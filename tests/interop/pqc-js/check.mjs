// An independent reader of what smimegate writes with post-quantum keys (issue 14 point 4).
//
// It shares nothing with smimegate: another language, another ASN.1 parser (asn1js), and other
// implementations of every primitive (@noble/post-quantum for ML-KEM (FIPS 203) and ML-DSA
// (FIPS 204), @noble/hashes for SHA-2 and HKDF, @noble/ciphers for AES key wrap, AES-CBC and
// AES-GCM). RSA signers are checked with node:crypto. Written from the RFCs: RFC 5652 (CMS),
// RFC 5083 (AuthEnvelopedData), RFC 9629 (KEMRecipientInfo), RFC 9936 (ML-KEM in CMS), RFC 9882
// (ML-DSA in CMS), RFC 9935 (ML-KEM private key seed form).
//
//   node check.mjs decrypt CMS.der KEY.pk8.der   -> the content on stdout
//   node check.mjs verify CMS.der [CONTENT]      -> JSON list of signers on stdout
//
// Exit 0 when done (a signer that fails is reported, not fatal), 1 with a message on stderr.
import { readFileSync } from "node:fs";
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import * as asn1js from "asn1js";
import { ml_kem512, ml_kem768, ml_kem1024 } from "@noble/post-quantum/ml-kem.js";
import { ml_dsa44, ml_dsa65, ml_dsa87 } from "@noble/post-quantum/ml-dsa.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { aeskw, cbc, gcm } from "@noble/ciphers/aes.js";

const OID = {
  envelopedData: "1.2.840.113549.1.7.3",
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  signedData: "1.2.840.113549.1.7.2",
  oriKem: "1.2.840.113549.1.9.16.13.3",
  hkdfSha256: "1.2.840.113549.1.9.16.3.28",
  aes128wrap: "2.16.840.1.101.3.4.1.5",
  aes192wrap: "2.16.840.1.101.3.4.1.25",
  aes256wrap: "2.16.840.1.101.3.4.1.45",
  aes128cbc: "2.16.840.1.101.3.4.1.2",
  aes256cbc: "2.16.840.1.101.3.4.1.42",
  aes128gcm: "2.16.840.1.101.3.4.1.6",
  aes256gcm: "2.16.840.1.101.3.4.1.46",
  messageDigest: "1.2.840.113549.1.9.4",
  contentType: "1.2.840.113549.1.9.3",
  counterSignature: "1.2.840.113549.1.9.6",
  rsaEncryption: "1.2.840.113549.1.1.1",
};
const KEMS = {
  "2.16.840.1.101.3.4.4.1": ml_kem512,
  "2.16.840.1.101.3.4.4.2": ml_kem768,
  "2.16.840.1.101.3.4.4.3": ml_kem1024,
};
const DSAS = {
  "2.16.840.1.101.3.4.3.17": ["ml-dsa-44", ml_dsa44],
  "2.16.840.1.101.3.4.3.18": ["ml-dsa-65", ml_dsa65],
  "2.16.840.1.101.3.4.3.19": ["ml-dsa-87", ml_dsa87],
};
const DIGESTS = {
  "2.16.840.1.101.3.4.2.1": ["sha256", sha256],
  "2.16.840.1.101.3.4.2.2": ["sha384", sha384],
  "2.16.840.1.101.3.4.2.3": ["sha512", sha512],
};
const WRAP_BYTES = { [OID.aes128wrap]: 16, [OID.aes192wrap]: 24, [OID.aes256wrap]: 32 };

function fail(message) {
  process.stderr.write(`check.mjs: ${message}\n`);
  process.exit(1);
}

function parse(bytes) {
  const view = new Uint8Array(bytes);
  const { offset, result } = asn1js.fromBER(view);
  if (offset === -1 || offset !== view.length) fail(`not one BER element: ${result.error}`);
  return result;
}

const raw = (el) => new Uint8Array(el.valueBeforeDecodeView);
const oid = (el) => el.valueBlock.toString();
const octets = (el) => {
  // Primitive or constructed (BER) OCTET STRING.
  if (!el.idBlock.isConstructed) return new Uint8Array(el.valueBlock.valueHexView);
  return concat(el.valueBlock.value.map(octets));
};
const intValue = (el) => el.valueBlock.valueDec;
const isContext = (el, n) => el.idBlock.tagClass === 3 && el.idBlock.tagNumber === n;

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function derLength(n) {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}
const tlv = (tag, body) => concat([Uint8Array.of(tag), derLength(body.length), body]);

function contentInfo(der) {
  const ci = parse(der);
  const type = oid(ci.valueBlock.value[0]);
  return [type, ci.valueBlock.value[1].valueBlock.value[0]];
}

// ---- decryption ------------------------------------------------------------------------------

function mlKemSeed(pk8) {
  // PrivateKeyInfo { version, algorithm, privateKey OCTET STRING { seed [0] IMPLICIT ... } }
  const info = parse(pk8).valueBlock.value;
  const kem = KEMS[oid(info[1].valueBlock.value[0])];
  if (!kem) fail(`not an ML-KEM key: ${oid(info[1].valueBlock.value[0])}`);
  const inner = octets(info[2]);
  // RFC 9935 6: seed [0] IMPLICIT OCTET STRING (SIZE (64)), d || z.
  if (inner[0] !== 0x80 || inner[1] !== 64) fail("ML-KEM private key is not in seed form");
  return [kem, kem.keygen(inner.subarray(2, 66)).secretKey];
}

function kemUnwrap(kemri, kem, secretKey) {
  // RFC 9629 3: version, rid, kem, kemct, kdf, kekLength, ukm [0] OPTIONAL, wrap, encryptedKey
  const f = kemri.valueBlock.value;
  if (KEMS[oid(f[2].valueBlock.value[0])] !== kem) return null;
  if (oid(f[4].valueBlock.value[0]) !== OID.hkdfSha256) fail("KDF is not HKDF-SHA256");
  const kekLength = intValue(f[5]);
  const hasUkm = isContext(f[6], 0);
  const ukm = hasUkm ? raw(f[6]) : new Uint8Array(0);
  const wrap = f[hasUkm ? 7 : 6];
  const encryptedKey = octets(f[hasUkm ? 8 : 7]);
  if (WRAP_BYTES[oid(wrap.valueBlock.value[0])] !== kekLength) fail("kekLength does not fit wrap");
  const shared = kem.decapsulate(octets(f[3]), secretKey);
  // RFC 9629 5: info = DER of CMSORIforKEMOtherInfo { wrap, kekLength, ukm [0] EXPLICIT OPT }.
  if (kekLength < 1 || kekLength > 127) fail(`kekLength ${kekLength}`);
  const intDer = tlv(0x02, Uint8Array.of(kekLength));
  const info = tlv(0x30, concat([raw(wrap), intDer, ukm]));
  const kek = hkdf(sha256, shared, undefined, info, kekLength);
  try {
    return aeskw(kek).decrypt(encryptedKey);
  } catch {
    return null; // another recipient's, or not ours
  }
}

function decrypt(der, pk8) {
  const [type, body] = contentInfo(der);
  if (type !== OID.envelopedData && type !== OID.authEnvelopedData) fail(`not enveloped: ${type}`);
  const fields = body.valueBlock.value;
  let i = 1;
  if (isContext(fields[i], 0)) i += 1; // originatorInfo
  const recipientInfos = fields[i].valueBlock.value;
  const eci = fields[i + 1].valueBlock.value;
  const [kem, secretKey] = mlKemSeed(pk8);
  let cek = null;
  for (const ri of recipientInfos) {
    // ori [4] IMPLICIT OtherRecipientInfo { oriType, oriValue }
    if (!isContext(ri, 4) || oid(ri.valueBlock.value[0]) !== OID.oriKem) continue;
    cek = kemUnwrap(ri.valueBlock.value[1], kem, secretKey);
    if (cek) break;
  }
  if (!cek) fail("no KEMRecipientInfo opens with this key");
  const alg = eci[1].valueBlock.value;
  const cipherOid = oid(alg[0]);
  const ciphertext = octets(eci[2]); // encryptedContent [0] IMPLICIT, primitive or constructed
  if (type === OID.envelopedData) {
    if (cipherOid !== OID.aes256cbc && cipherOid !== OID.aes128cbc) fail(`cipher ${cipherOid}`);
    return cbc(cek, octets(alg[1])).decrypt(ciphertext);
  }
  // RFC 5083: authAttrs [1] OPTIONAL, mac; RFC 5084: GCMParameters { nonce, icvLen }.
  if (cipherOid !== OID.aes256gcm && cipherOid !== OID.aes128gcm) fail(`cipher ${cipherOid}`);
  const nonce = octets(alg[1].valueBlock.value[0]);
  if (isContext(fields[i + 2], 1)) fail("authAttrs are not read here");
  const mac = octets(fields[i + 2]);
  return gcm(cek, nonce).decrypt(concat([ciphertext, mac]));
}

// ---- signatures ------------------------------------------------------------------------------

function certificates(fields) {
  const out = [];
  for (const el of fields) {
    if (!isContext(el, 0)) continue;
    for (const cert of el.valueBlock.value) {
      const tbs = cert.valueBlock.value[0].valueBlock.value;
      const at = isContext(tbs[0], 0) ? 1 : 0; // version [0]
      out.push({ serial: raw(tbs[at]), issuer: raw(tbs[at + 2]), spki: tbs[at + 5] });
    }
  }
  return out;
}

function signerCert(sid, certs) {
  if (isContext(sid, 0)) return null; // by SKI: not needed for what smimegate writes
  const [issuer, serial] = sid.valueBlock.value.map(raw);
  return certs.find((c) => Buffer.compare(c.issuer, issuer) === 0 &&
    Buffer.compare(c.serial, serial) === 0) ?? null;
}

function checkSigner(si, certs, content, counter) {
  const f = si.valueBlock.value;
  const cert = signerCert(f[1], certs);
  const digestOid = oid(f[2].valueBlock.value[0]);
  let at = 3;
  const signedAttrs = isContext(f[at], 0) ? f[at++] : null;
  const sigAlg = oid(f[at].valueBlock.value[0]);
  const sigParams = f[at].valueBlock.value.length > 1;
  const signature = octets(f[at + 1]);
  const unsigned = f[at + 2] && isContext(f[at + 2], 1) ? f[at + 2] : null;
  const result = { algorithm: DSAS[sigAlg]?.[0] ?? sigAlg, valid: false, reason: null,
                   countersigns: null };
  const out = [result];
  let message = content;
  if (!cert) result.reason = "certificate not found";
  else if (!DIGESTS[digestOid]) result.reason = `digest ${digestOid}`;
  else {
    if (signedAttrs) {
      const attrs = Object.fromEntries(signedAttrs.valueBlock.value.map(
        (a) => [oid(a.valueBlock.value[0]), a.valueBlock.value[1].valueBlock.value[0]]));
      const digest = DIGESTS[digestOid][1](content);
      if (!counter && !attrs[OID.contentType]) result.reason = "no contentType";
      else if (counter && attrs[OID.contentType]) result.reason = "contentType in countersignature";
      else if (Buffer.compare(octets(attrs[OID.messageDigest]), digest) !== 0) {
        result.reason = "messageDigest mismatch";
      }
      // RFC 5652 5.4: the DER of the SET OF, not the [0] IMPLICIT as sent.
      const der = raw(signedAttrs);
      message = concat([Uint8Array.of(0x31), der.subarray(1)]);
    }
    if (result.reason === null) {
      const spki = cert.spki;
      const keyOid = oid(spki.valueBlock.value[0].valueBlock.value[0]);
      // asn1js gives the BIT STRING's bits without the unused-bits octet.
      const publicKey = new Uint8Array(spki.valueBlock.value[1].valueBlock.valueHexView);
      if (DSAS[sigAlg]) {
        // RFC 9882: parameters absent, the key of the same parameter set, pure ML-DSA with
        // the empty context.
        if (sigParams) result.reason = "parameters present";
        else if (keyOid !== sigAlg) result.reason = "key is another parameter set";
        else result.valid = DSAS[sigAlg][1].verify(signature, message, publicKey);
      } else if (sigAlg === OID.rsaEncryption) {
        const key = createPublicKey({ key: Buffer.from(raw(spki)), format: "der", type: "spki" });
        result.valid = nodeVerify(DIGESTS[digestOid][0], message, key, signature);
      } else {
        result.reason = `algorithm ${sigAlg} not checked here`;
      }
      if (!result.valid && result.reason === null) result.reason = "signature does not verify";
    }
  }
  if (unsigned) {
    for (const attr of unsigned.valueBlock.value) {
      if (oid(attr.valueBlock.value[0]) !== OID.counterSignature) continue;
      // RFC 5652 11.4: each value a SignerInfo over this signer's signature value.
      for (const value of attr.valueBlock.value[1].valueBlock.value) {
        out.push(...checkSigner(value, certs, signature, true));
      }
    }
  }
  return out;
}

function verify(der, detached) {
  const [type, body] = contentInfo(der);
  if (type !== OID.signedData) fail(`not SignedData: ${type}`);
  const fields = body.valueBlock.value;
  const encap = fields[2].valueBlock.value;
  const content = detached ?? (encap[1] ? octets(encap[1].valueBlock.value[0]) : null);
  if (!content) fail("no content");
  const certs = certificates(fields);
  const signerInfos = fields[fields.length - 1].valueBlock.value;
  const results = [];
  for (const si of signerInfos) {
    const parent = results.length;
    checkSigner(si, certs, content, false).forEach((r, n) => {
      r.countersigns = n === 0 ? null : parent;
      results.push(r);
    });
  }
  return results;
}

const [command, cmsPath, extra] = process.argv.slice(2);
if (command === "decrypt" && cmsPath && extra) {
  process.stdout.write(decrypt(readFileSync(cmsPath), readFileSync(extra)));
} else if (command === "verify" && cmsPath) {
  const detached = extra ? new Uint8Array(readFileSync(extra)) : null;
  process.stdout.write(JSON.stringify(verify(readFileSync(cmsPath), detached)) + "\n");
} else {
  fail("usage: check.mjs decrypt CMS.der KEY.pk8.der | verify CMS.der [CONTENT]");
}
