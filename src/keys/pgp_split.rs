//! Takes unprotected RSA and Curve25519 (cv25519) secret key material out
//! of OpenPGP key data before Sequoia parses it.
//!
//! Sequoia keeps every unencrypted secret key it parses encrypted in memory
//! under a key derived from a 16 KiB "prekey" (a side-channel measure), and
//! re-derives it on each access: about 3.3 million instructions for the two
//! keys of a GnuPG RSA-3072 key file, 8% of a whole decrypt, and half of a
//! cv25519 decrypt. RSA secrets go to kustos's own constant-time decryptor
//! anyway (`pgp_rsa`), cv25519 scalars to `pgp_x25519`, both zeroized on
//! drop, so they skip that: each v4 RSA or cv25519 ECDH secret-key packet
//! whose secret is stored in the clear becomes the matching public-key
//! packet, and its secret is returned next to the rewritten data.
//!
//! Anything unexpected (several armored blocks, armor or packet framing
//! this reader does not know, a bad checksum, protected keys, other
//! algorithms) leaves the data or the packet as it is, for Sequoia to parse
//! and report on as before.

use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

/// The numbers of one RSA secret key (big-endian, no leading zeros),
/// zeroized on drop.
pub(super) struct RsaSecret {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Vec<u8>,
    pub p: Vec<u8>,
    pub q: Vec<u8>,
    pub u: Vec<u8>,
}

impl Drop for RsaSecret {
    fn drop(&mut self) {
        self.d.zeroize();
        self.p.zeroize();
        self.q.zeroize();
        self.u.zeroize();
    }
}

/// The scalar of one cv25519 ECDH key (big-endian as stored, zeroized on
/// drop) and the public point it belongs to.
pub(super) struct X25519Secret {
    pub public: Vec<u8>,
    pub scalar: Vec<u8>,
}

impl Drop for X25519Secret {
    fn drop(&mut self) {
        self.scalar.zeroize();
    }
}

/// Key data with its RSA and cv25519 secrets taken out.
pub(super) struct Split {
    /// Binary OpenPGP packets, with public-key packets in place of the
    /// secret-key packets taken out (zeroized: the packets left as they
    /// were may hold other secret keys).
    pub packets: Zeroizing<Vec<u8>>,
    pub secrets: Vec<SplitSecret>,
}

/// A secret taken out of a secret-key packet.
pub(super) enum SplitSecret {
    Rsa(RsaSecret),
    X25519(X25519Secret),
}

const TAG_SECRET_KEY: u8 = 5;
const TAG_PUBLIC_KEY: u8 = 6;
const TAG_SECRET_SUBKEY: u8 = 7;
const TAG_PUBLIC_SUBKEY: u8 = 14;
/// The primes' size limit of the constant-time decryptor (RSA-4096).
const MAX_PRIME_BITS: usize = 2048;

/// Splits the RSA and cv25519 secrets out of armored or binary key data,
/// or `None` when there is none to take out or the data is not plainly
/// readable.
pub(super) fn split_secrets(data: &[u8]) -> Option<Split> {
    let binary = match data.first()? {
        b if b & 0x80 != 0 => Zeroizing::new(data.to_vec()),
        _ => dearmor(data, "PRIVATE KEY BLOCK")?,
    };
    let mut packets = Zeroizing::new(Vec::with_capacity(binary.len()));
    let mut secrets = Vec::new();
    let mut rest: &[u8] = &binary;
    while !rest.is_empty() {
        let (tag, header_len, body_len) = packet_header(rest)?;
        let body = rest.get(header_len..header_len.checked_add(body_len)?)?;
        let public_tag = match tag {
            TAG_SECRET_KEY => Some(TAG_PUBLIC_KEY),
            TAG_SECRET_SUBKEY => Some(TAG_PUBLIC_SUBKEY),
            _ => None,
        };
        let taken = public_tag.and_then(|t| {
            let (public_len, secret) = rsa_secret(body)
                .map(|(len, s)| (len, SplitSecret::Rsa(s)))
                .or_else(|| cv25519_secret(body).map(|(len, s)| (len, SplitSecret::X25519(s))))?;
            Some((t, public_len, secret))
        });
        match taken {
            Some((public_tag, public_len, secret)) => {
                push_packet(&mut packets, public_tag, &body[..public_len]);
                secrets.push(secret);
            }
            None => packets.extend_from_slice(&rest[..header_len + body_len]),
        }
        rest = &rest[header_len + body_len..];
    }
    (!secrets.is_empty()).then_some(Split { packets, secrets })
}

/// The binary content of the one ASCII-armored block in `data`, if it is
/// a `PGP {label}` block (e.g. `PRIVATE KEY BLOCK`, `MESSAGE`) in the plain
/// form GnuPG writes: anything else is `None`, for Sequoia to read.
pub(super) fn dearmor(data: &[u8], label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let text = std::str::from_utf8(data).ok()?;
    let begin = format!("-----BEGIN PGP {label}-----");
    let end = format!("-----END PGP {label}-----");
    if text.matches("-----BEGIN PGP").count() != 1 {
        return None;
    }
    let mut lines = text.lines().map(str::trim_end);
    lines.by_ref().find(|l| *l == begin)?;
    let mut body = Zeroizing::new(String::new());
    let mut in_headers = true;
    let mut crc = None;
    for line in lines.by_ref() {
        if line == end {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .ok()?;
            let bytes = Zeroizing::new(bytes);
            return match crc {
                Some(c) if c != crc24(&bytes) => None,
                _ => Some(bytes),
            };
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
                continue;
            }
            if line.contains(": ") {
                continue;
            }
            in_headers = false;
        }
        if let Some(sum) = line.strip_prefix('=') {
            let sum = base64::engine::general_purpose::STANDARD.decode(sum).ok()?;
            let &[a, b, c] = &sum[..] else { return None };
            crc = Some(u32::from_be_bytes([0, a, b, c]));
        } else if crc.is_some() || line.is_empty() {
            return None;
        } else {
            body.push_str(line);
        }
    }
    None
}

/// The armor checksum (RFC 4880, 6.1), a byte at a time.
fn crc24(data: &[u8]) -> u32 {
    data.iter().fold(0xB7_04CE, |crc, byte| {
        let index = ((crc >> 16) ^ u32::from(*byte)) & 0xff;
        ((crc << 8) ^ CRC24_TABLE[index as usize]) & 0xFF_FFFF
    })
}

/// `CRC24_TABLE[i]`: the remainder of `i·x^24` (the generator 0x864CFB).
const CRC24_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 16;
        let mut bit = 0;
        while bit < 8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= 0x186_4CFB;
            }
            bit += 1;
        }
        table[i] = crc & 0xFF_FFFF;
        i += 1;
    }
    table
};

/// `(tag, header length, body length)` of the packet at the start of
/// `data`; `None` for partial or indeterminate lengths (not used for keys).
fn packet_header(data: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *data.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    if first & 0x40 != 0 {
        let tag = first & 0x3f;
        let l1 = usize::from(*data.get(1)?);
        return match l1 {
            0..=191 => Some((tag, 2, l1)),
            192..=223 => Some((tag, 3, ((l1 - 192) << 8) + usize::from(*data.get(2)?) + 192)),
            255 => {
                let len = u32::from_be_bytes(data.get(2..6)?.try_into().ok()?);
                Some((tag, 6, usize::try_from(len).ok()?))
            }
            _ => None,
        };
    }
    let tag = (first >> 2) & 0x0f;
    let (header_len, len) = match first & 3 {
        0 => (2, usize::from(*data.get(1)?)),
        1 => (
            3,
            usize::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?)),
        ),
        2 => (
            5,
            usize::try_from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)).ok()?,
        ),
        _ => return None,
    };
    Some((tag, header_len, len))
}

/// Appends a new-format packet.
fn push_packet(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(0xc0 | tag);
    match body.len() {
        len @ 0..=191 => out.push(len as u8),
        len @ 192..=8383 => {
            let v = len - 192;
            out.extend_from_slice(&[(v >> 8) as u8 + 192, v as u8]);
        }
        len => {
            out.push(0xff);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(body);
}

/// For the body of a v4 RSA secret-key packet with an unprotected secret
/// and a valid checksum: the length of its public part and the numbers.
fn rsa_secret(body: &[u8]) -> Option<(usize, RsaSecret)> {
    // Version 4, four bytes of creation time, algorithm 1 (RSA) or 2 (RSA
    // encrypt-only), then n and e.
    if *body.first()? != 4 || !matches!(body.get(5)?, 1 | 2) {
        return None;
    }
    let mut at = 6;
    let n = mpi(body, &mut at)?;
    let e = mpi(body, &mut at)?;
    let public_len = at;
    let secret = clear_secret(body, public_len, |at| {
        // All four read before any is copied: nothing secret is left in
        // an unzeroized copy when one is missing.
        let (d, p, q, u) = (
            mpi(body, at)?,
            mpi(body, at)?,
            mpi(body, at)?,
            mpi(body, at)?,
        );
        Some(RsaSecret {
            n: n.to_vec(),
            e: e.to_vec(),
            d: d.to_vec(),
            p: p.to_vec(),
            q: q.to_vec(),
            u: u.to_vec(),
        })
    })?;
    let fits = secret.p.len() * 8 <= MAX_PRIME_BITS && secret.q.len() * 8 <= MAX_PRIME_BITS;
    // `secret` is zeroized on drop when it does not fit.
    fits.then_some((public_len, secret))
}

/// The secret part of a v4 secret-key packet after its public part (which
/// ends at `at`): string-to-key usage 0 (stored in the clear), the secret
/// `read` takes, then a valid two-byte checksum that ends the packet.
fn clear_secret<T>(
    body: &[u8],
    mut at: usize,
    read: impl FnOnce(&mut usize) -> Option<T>,
) -> Option<T> {
    if *body.get(at)? != 0 {
        return None;
    }
    at += 1;
    let start = at;
    let secret = read(&mut at)?;
    let checksum = body
        .get(start..at)?
        .iter()
        .fold(0u16, |sum, b| sum.wrapping_add(u16::from(*b)));
    let stored = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?);
    // A failed check drops (and so zeroizes) the secret.
    (checksum == stored && at + 2 == body.len()).then_some(secret)
}

/// The OID of Curve25519 for ECDH (RFC 4880bis, 9.2: 1.3.6.1.4.1.3029.1.5.1).
const CV25519_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01];

/// For the body of a v4 ECDH Curve25519 secret-key packet with an
/// unprotected secret and a valid checksum: the length of its public part
/// and the scalar.
fn cv25519_secret(body: &[u8]) -> Option<(usize, X25519Secret)> {
    // Version 4, four bytes of creation time, algorithm 18 (ECDH), then
    // the curve OID, the public point and the KDF parameters.
    if *body.first()? != 4 || *body.get(5)? != 18 {
        return None;
    }
    let oid_len = usize::from(*body.get(6)?);
    if body.get(7..7 + oid_len)? != CV25519_OID {
        return None;
    }
    let mut at = 7 + oid_len;
    let public = mpi(body, &mut at)?.to_vec();
    let kdf_len = usize::from(*body.get(at)?);
    at += 1 + kdf_len;
    let public_len = at;
    let secret = clear_secret(body, public_len, |at| {
        let scalar = mpi(body, at)?;
        Some(X25519Secret {
            public,
            scalar: scalar.to_vec(),
        })
    })?;
    // `secret` is zeroized on drop when it is too long.
    (secret.scalar.len() <= 32).then_some((public_len, secret))
}

/// An MPI: two bytes of bit count, then the big-endian bytes. Leading zero
/// bytes (not written by conforming implementations) are skipped.
fn mpi<'a>(body: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let bits = usize::from(u16::from_be_bytes(body.get(*at..*at + 2)?.try_into().ok()?));
    let len = bits.div_ceil(8);
    let value = body.get(*at + 2..*at + 2 + len)?;
    *at += 2 + len;
    let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    Some(&value[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_matches_the_bitwise_definition() {
        fn bitwise(data: &[u8]) -> u32 {
            let mut crc: u32 = 0xB7_04CE;
            for byte in data {
                crc ^= u32::from(*byte) << 16;
                for _ in 0..8 {
                    crc <<= 1;
                    if crc & 0x100_0000 != 0 {
                        crc ^= 0x186_4CFB;
                    }
                }
            }
            crc & 0xFF_FFFF
        }
        assert_eq!(crc24(b""), 0xB7_04CE);
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in [1, 2, 3, 100, data.len()] {
            assert_eq!(crc24(&data[..len]), bitwise(&data[..len]));
        }
    }

    /// Messages as Sequoia (and GnuPG) armor them come back byte for byte;
    /// other labels, a bad checksum and two blocks are left to Sequoia.
    #[test]
    fn dearmors_messages() {
        use sequoia_openpgp::armor::{Kind, Writer};
        use std::io::Write;
        let data: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let mut writer = Writer::new(Vec::new(), Kind::Message).unwrap();
        writer.write_all(&data).unwrap();
        let armored = writer.finalize().unwrap();
        assert_eq!(dearmor(&armored, "MESSAGE").as_deref(), Some(&data));
        assert!(dearmor(&armored, "PRIVATE KEY BLOCK").is_none());
        let text = String::from_utf8(armored.clone()).unwrap();
        let sum_at = text.find("\n=").unwrap() + 2;
        let mut bad = text.clone();
        let flipped = if &bad[sum_at..sum_at + 1] == "A" {
            "B"
        } else {
            "A"
        };
        bad.replace_range(sum_at..sum_at + 1, flipped);
        assert!(dearmor(bad.as_bytes(), "MESSAGE").is_none());
        let twice = format!("{text}{text}");
        assert!(dearmor(twice.as_bytes(), "MESSAGE").is_none());
    }

    #[test]
    fn packet_lengths_round_trip() {
        for len in [0usize, 1, 191, 192, 500, 8383, 8384, 70_000] {
            let body = vec![7u8; len];
            let mut out = Vec::new();
            push_packet(&mut out, TAG_PUBLIC_KEY, &body);
            let (tag, header_len, body_len) = packet_header(&out).unwrap();
            assert_eq!((tag, body_len), (TAG_PUBLIC_KEY, len), "length {len}");
            assert_eq!(header_len + body_len, out.len());
        }
        // Old format, one- and two-byte lengths; partial lengths refused.
        assert_eq!(packet_header(&[0x94, 3, 0, 0, 0]), Some((5, 2, 3)));
        assert_eq!(packet_header(&[0x95, 1, 0]), Some((5, 3, 256)));
        assert_eq!(packet_header(&[0xc5, 0xe1]), None);
        assert_eq!(packet_header(&[0x97]), None);
        assert_eq!(packet_header(&[0x17, 1]), None);
    }

    #[test]
    fn malformed_data_is_left_alone() {
        for data in [
            &b""[..],
            b"not a key",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n!!!!\n-----END PGP PRIVATE KEY BLOCK-----\n",
            &[0xc5, 0x05, 4, 0, 0, 0, 0],
            &[0xc5, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(split_secrets(data).is_none());
        }
    }
}
