//! Shamir's secret sharing over GF(2^8), share layout as sops writes it.
//!
//! sops (a fork of HashiCorp Vault's code) splits each byte of the data key
//! with its own random polynomial of degree `threshold - 1` over GF(2^8) with
//! the AES polynomial, evaluated at x = 1..n. A share is the 32 y-bytes
//! followed by the x byte (33 bytes). Group *i* holds the share with x = i+1.
//! Multiplication is branch-free, so timing does not depend on the secret.

use rand::RngCore;
use zeroize::Zeroizing;

/// Multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, in constant time.
fn mul(a: u8, b: u8) -> u8 {
    let mut acc: u8 = 0;
    for i in (0..8).rev() {
        let bit = (b >> i) & 1;
        let a_or_zero = 0u8.wrapping_sub(bit) & a;
        let reduce = 0u8.wrapping_sub(acc >> 7) & 0x1B;
        acc = a_or_zero ^ (reduce ^ acc.wrapping_add(acc));
    }
    acc
}

/// a^254 = a^-1 (and 0 for 0), by a fixed addition chain.
fn inverse(a: u8) -> u8 {
    let mut b = mul(a, a); // a^2
    let mut c = mul(a, b); // a^3
    b = mul(c, c); // a^6
    b = mul(b, b); // a^12
    c = mul(b, c); // a^15
    b = mul(b, b); // a^24
    b = mul(b, b); // a^48
    b = mul(b, c); // a^63
    b = mul(b, b); // a^126
    b = mul(a, b); // a^127
    mul(b, b) // a^254
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, String> {
    if parts < threshold {
        return Err("parts cannot be less than threshold".into());
    }
    if parts > 255 {
        return Err("parts cannot exceed 255".into());
    }
    if threshold < 2 {
        return Err("threshold must be at least 2".into());
    }
    if secret.is_empty() {
        return Err("cannot split an empty secret".into());
    }
    let mut out: Vec<Zeroizing<Vec<u8>>> = (0..parts)
        .map(|i| {
            let mut v = vec![0u8; secret.len() + 1];
            v[secret.len()] = i as u8 + 1;
            Zeroizing::new(v)
        })
        .collect();
    let mut coeffs = Zeroizing::new(vec![0u8; threshold]);
    for (idx, &byte) in secret.iter().enumerate() {
        coeffs[0] = byte;
        rand::rngs::OsRng.fill_bytes(&mut coeffs[1..]);
        for (i, share) in out.iter_mut().enumerate() {
            let x = i as u8 + 1;
            // Horner's rule from the highest coefficient down.
            let mut y = coeffs[threshold - 1];
            for k in (0..threshold - 1).rev() {
                y = mul(y, x) ^ coeffs[k];
            }
            share[idx] = y;
        }
    }
    Ok(out)
}

/// Recombines shares (Lagrange interpolation at x = 0).
pub fn combine(parts: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, String> {
    if parts.len() < 2 {
        return Err("less than two parts cannot be used to reconstruct the secret".into());
    }
    let len = parts[0].len();
    if len < 2 {
        return Err("parts must be at least two bytes".into());
    }
    if parts.iter().any(|p| p.len() != len) {
        return Err("all parts must be the same length".into());
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err("duplicate part detected".into());
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (idx, out) in secret.iter_mut().enumerate() {
        let mut result = 0u8;
        for (i, part) in parts.iter().enumerate() {
            let mut basis = 1u8;
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    // (0 - xj) / (xi - xj); subtraction is XOR in GF(2^8).
                    basis = mul(basis, mul(xj, inverse(xs[i] ^ xj)));
                }
            }
            result ^= mul(part[idx], basis);
        }
        *out = result;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1);
        }
    }

    #[test]
    fn split_combine_subsets() {
        let secret: Vec<u8> = (100..132).collect();
        let shares = split(&secret, 5, 3).unwrap();
        assert!(shares.iter().all(|s| s.len() == 33));
        assert_eq!(shares[2][32], 3);
        let pick = vec![shares[4].clone(), shares[0].clone(), shares[2].clone()];
        assert_eq!(&combine(&pick).unwrap()[..], &secret[..]);
        let all = shares.clone();
        assert_eq!(&combine(&all).unwrap()[..], &secret[..]);
        let two = vec![shares[1].clone(), shares[3].clone()];
        assert_ne!(&combine(&two).unwrap()[..], &secret[..]);
        assert!(split(&secret, 3, 1).is_err());
    }
}
