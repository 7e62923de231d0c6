//! `uniqueString()` and `guid()`, bit-exact with Azure Resource Manager.

/// Computes `uniqueString(parts...)`: 13 lower-case base32 characters of a 64-bit hash of the
/// parts joined with `-`.
///
/// The hash is the engine's own "MurmurHash64" (two 32-bit lanes, seed 0), which is neither
/// MurmurHash64A nor Murmur3; it is reproduced from the decompiled
/// `Azure.Deployments.Expression` `ComputeHash.MurmurHash64`, and checked against values
/// returned by real deployments (see the tests).
pub fn unique_string(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let hash = murmur_hash64(joined.as_bytes());
    base32_13(hash)
}

/// Computes `guid(parts...)`: an RFC 4122 version 5 (SHA-1) UUID of the parts joined with `-`,
/// in namespace `11fb06fb-712d-4ddd-98c7-e71bbd588830`, printed lower-case.
pub fn guid(parts: &[&str]) -> String {
    let joined = parts.join("-");
    uuid::Uuid::new_v5(&ARM_GUID_NAMESPACE, joined.as_bytes()).to_string()
}

const ARM_GUID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x11, 0xfb, 0x06, 0xfb, 0x71, 0x2d, 0x4d, 0xdd, 0x98, 0xc7, 0xe7, 0x1b, 0xbd, 0x58, 0x88, 0x30,
]);

const C1: u32 = 0x239B_961B;
const C2: u32 = 0xAB0E_9789;

fn le32(bytes: &[u8]) -> u32 {
    let mut word = [0_u8; 4];
    for (slot, byte) in word.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    u32::from_le_bytes(word)
}

fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^= x >> 16;
    x
}

fn murmur_hash64(data: &[u8]) -> u64 {
    let mut h1: u32 = 0;
    let mut h2: u32 = 0;

    let mut blocks = data.chunks_exact(8);
    for block in &mut blocks {
        let k1 = le32(&block[..4]);
        let k2 = le32(&block[4..]);

        let k1 = k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h1 = (h1 ^ k1)
            .rotate_left(19)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x561C_CD1B);

        let k2 = k2.wrapping_mul(C2).rotate_left(17).wrapping_mul(C1);
        h2 = (h2 ^ k2)
            .rotate_left(13)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x0BCA_A747);
    }

    // The tail is mixed in without the rotate/add/multiply step of the main loop.
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k1 = le32(&tail[..tail.len().min(4)]);
        h1 ^= k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        if tail.len() > 4 {
            let k2 = le32(&tail[4..]);
            h2 ^= k2.wrapping_mul(C2).rotate_left(17).wrapping_mul(C1);
        }
    }

    // The engine mixes in the length as a 32-bit value.
    let length = data.len() as u32;
    h1 ^= length;
    h2 ^= length;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix32(h1);
    h2 = fmix32(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (u64::from(h2) << 32) | u64::from(h1)
}

/// Takes 13 groups of 5 bits from the top; the 13th group is the low 4 bits followed by a 0.
fn base32_13(mut hash: u64) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(13);
    for _ in 0..13 {
        out.push(char::from(ALPHABET[(hash >> 59) as usize]));
        hash <<= 5;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_string_real_azure_deployments() {
        // Values returned by deploying templates to Azure, recorded in the comments of
        // KingslandConsulting/Kingsland.ArmLinter ArmFunctions_UniqueString.cs.
        assert_eq!(unique_string(&["aaa"]), "zavj67f3en4hc");
        assert_eq!(unique_string(&["bbb"]), "w5eragfxe33cy");
        assert_eq!(unique_string(&["zzz"]), "cryksdzzzawae");
        assert_eq!(unique_string(&["xxx", "yyy", "zzz"]), "lghi7k5js7itq");
    }

    #[test]
    fn unique_string_bicep_function_resolver() {
        // Azure/bicep FunctionResolverTests.cs, folded by the Azure.Deployments.Expression engine.
        assert_eq!(unique_string(&["snap", "crackle", "pop"]), "byghxckddilkc");
    }

    #[test]
    fn unique_string_bicep_param_baseline() {
        // Azure/bicep baselines_bicepparam/Expressions/parameters.json (real engine).
        assert_eq!(unique_string(&["asd", "asdf", "asdf"]), "iizpqit7ih3cc");
    }

    #[test]
    fn unique_string_bicep_snapshot() {
        // Azure/bicep SnapshotCommandTests basic/main.snapshot.json: `storejs26ofeqkqeve`.
        let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myRg";
        assert_eq!(unique_string(&[id]), "js26ofeqkqeve");
    }

    #[test]
    fn unique_string_azapi_provider() {
        // Azure/terraform-provider-azapi unique_string_function_test.go.
        let parts = [
            "/subscriptions/00000000-0000-0000-0000-000000000000",
            "resource-id",
        ];
        assert_eq!(unique_string(&parts), "cwvxuqg24sifi");
    }

    #[test]
    fn unique_string_uniquestring_sh_self_test() {
        // Self-test vectors of a third-party `uniquestring.sh` checked against Bicep.
        assert_eq!(unique_string(&["test"]), "rbgf3xv4ufgzg");
        assert_eq!(unique_string(&["hello", "world"]), "a7wkljktk6wne");
        assert_eq!(unique_string(&["abc"]), "cgtzqvhu4i23s");
        let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg";
        assert_eq!(unique_string(&[id]), "bmg7c6xu4tw46");
        assert_eq!(unique_string(&["foo", "bar", "baz"]), "xzi4ioaxtmth4");
    }

    #[test]
    fn unique_string_derived_regressions() {
        // Computed with the same algorithm (not independently verified); they pin every tail
        // length and a multi-byte UTF-8 input.
        let cases = [
            ("", "aaaaaaaaaaaaa"),
            ("a", "eveiun73364hy"),
            ("ab", "twldla3s3qb3q"),
            ("abcdefg", "logmp4qgzfm46"),
            ("abcdefgh", "q7ncvd5x2rx4e"),
            ("abcdefghi", "zignisl6otg3u"),
            ("abcdefghijklm", "drrqz7xt5wi54"),
            ("é", "5i6hbiqzwuby6"),
        ];
        for (input, expected) in cases {
            assert_eq!(unique_string(&[input]), expected, "{input:?}");
        }
    }

    #[test]
    fn unique_string_is_case_sensitive() {
        assert_ne!(unique_string(&["ABC"]), unique_string(&["abc"]));
    }

    #[test]
    fn guid_real_engine() {
        // Azure/bicep FunctionResolverTests.cs and baselines_bicepparam parameters.json.
        assert_eq!(
            guid(&["foo", "bar", "baz"]),
            "2ed86837-7c7c-5eaa-9864-dd077fd19b0d"
        );
        assert_eq!(guid(&["asdf"]), "228d27cc-6fdb-5934-b7ac-1efccebade04");
    }

    #[test]
    fn guid_derived_regressions() {
        // Computed with uuid5 in the ARM namespace (not independently verified).
        let cases: [(&[&str], &str); 5] = [
            (&["a"], "3703365d-5a9f-59b4-bca7-b9681389e4c1"),
            (&[""], "e655a85f-3ab2-5e4a-9666-569aa72a5a10"),
            (
                &["/subscriptions/00000000-0000-0000-0000-000000000000"],
                "b6af2640-793e-5e23-87ed-3a1ed155add8",
            ),
            (
                &[
                    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myRg",
                    "principal",
                    "role",
                ],
                "d2f3fafb-1ac2-5ae6-98ea-823d7f7918c2",
            ),
            (&["é"], "00e3d13f-31a7-5e5b-ac3b-5598870502dd"),
        ];
        for (parts, expected) in cases {
            assert_eq!(guid(parts), expected, "{parts:?}");
        }
    }

    #[test]
    fn uuid_v5_known_answers() {
        // RFC 4122 v5 vectors from the OpenTofu `uuidv5` documentation page.
        let cases = [
            (
                uuid::Uuid::NAMESPACE_DNS,
                "www.opentofu.org",
                "df1e675d-b743-5f6c-9952-6311d0f141df",
            ),
            (
                uuid::Uuid::NAMESPACE_URL,
                "https://www.opentofu.org/",
                "ace93eea-1a2c-5eed-b41b-718be15d2e50",
            ),
            (
                uuid::Uuid::NAMESPACE_OID,
                "1.3.6.1.4",
                "af9d40a5-7a36-5c07-b23a-851cd99fbfa5",
            ),
            (
                uuid::Uuid::NAMESPACE_X500,
                "CN=Example,C=GB",
                "84e09961-4aa4-57f8-95b7-03edb1073253",
            ),
        ];
        for (namespace, name, expected) in cases {
            assert_eq!(
                uuid::Uuid::new_v5(&namespace, name.as_bytes()).to_string(),
                expected
            );
        }
    }
}
