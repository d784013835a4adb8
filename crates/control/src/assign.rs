//! `users/assign` and its compiled form `users/cdb` (qmail-users(5), qmail.md 4.8).
//!
//! Lines `=local:user:uid:gid:home:dash:ext:` (exact address) and
//! `+prefix:user:uid:gid:home:dash:pre:` (every address starting with prefix), ended by a
//! line `.`. The cdb maps `!` + lowercase(local) + NUL (for `=`) or `!` + lowercase(prefix)
//! (for `+`) to the six fields joined by NUL; the key `""` holds the distinct last
//! characters of the `+` prefixes ("wildchars"), which limit the prefixes qmail-lspawn
//! probes. The first of duplicate keys wins.

/// One cdb record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Compile assign text into cdb records. Errors name the offending line.
pub fn compile(text: &[u8]) -> Result<Vec<Record>, String> {
    let mut records: Vec<Record> = Vec::new();
    let mut wild: Vec<u8> = Vec::new();
    let mut ended = false;
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line == b"." {
            ended = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        if line.contains(&0) {
            return Err(format!("NUL in line {}", n + 1));
        }
        let kind = line[0];
        let fields: Vec<&[u8]> = line[1..].split(|&b| b == b':').collect();
        if !matches!(kind, b'=' | b'+') || fields.len() < 7 {
            return Err(format!("syntax error in line {}", n + 1));
        }
        let mut key = vec![b'!'];
        key.extend(fields[0].iter().map(u8::to_ascii_lowercase));
        if kind == b'=' {
            key.push(0);
        } else if let Some(&last) = fields[0].last()
            && !wild.contains(&last)
        {
            wild.push(last);
        }
        let value = fields[1..7].join(&0u8);
        if !records.iter().any(|(k, _)| *k == key) {
            records.push((key, value));
        }
    }
    if !ended {
        return Err("missing final line with a single dot".into());
    }
    records.push((Vec::new(), wild));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_qmail_users_example() {
        let r = compile(b"=joe:joe:507:100:/home/joe:::\n+joe-:joe:507:100:/home/joe:-::\n+:alias:7790:2108:/var/qmail/alias:-::\n.\n").unwrap();
        assert_eq!(
            r[0],
            (
                b"!joe\0".to_vec(),
                b"joe\x00507\x00100\x00/home/joe\x00\x00".to_vec()
            )
        );
        assert_eq!(r[1].0, b"!joe-".to_vec());
        assert_eq!(r[2].0, b"!".to_vec());
        assert_eq!(r[3], (Vec::new(), b"-".to_vec()));
        assert!(compile(b"=joe:joe\n.\n").is_err());
        assert!(compile(b"=joe:joe:1:1:/h:::\n").is_err());
    }
}
