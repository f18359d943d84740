//! Deciding whether a container is native or Wasm (DESIGN.md, first match wins):
//! 1. annotation `run.oci.handler=wasm` or `module.wasm.image/variant=compat`;
//! 2. the entrypoint file starts with the wasm magic `\0asm`;
//! 3. a Wasm OCI artifact: the image layer decides, so the image front end
//!    turns that into the annotation of rule 1.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::state::PayloadKind;

/// The first four bytes of every WebAssembly binary.
pub const WASM_MAGIC: [u8; 4] = *b"\0asm";

/// The annotation crun and others use to ask for the Wasm handler.
pub const HANDLER_ANNOTATION: &str = "run.oci.handler";
/// The annotation Wasm images built for "compat" runtimes carry.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// Rule 1: do the annotations ask for Wasm?
pub fn annotations_say_wasm(annotations: &HashMap<String, String>) -> bool {
    annotations.get(HANDLER_ANNOTATION).map(String::as_str) == Some("wasm")
        || matches!(
            annotations.get(VARIANT_ANNOTATION).map(String::as_str),
            Some("compat" | "compat-smart")
        )
}

/// Rule 2: does the file start with the wasm magic?
pub fn has_wasm_magic(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let mut read = 0;
    while read < 4 {
        match f.read(&mut magic[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(magic == WASM_MAGIC)
}

/// The payload kind for an entrypoint file and the spec's annotations.
pub fn payload_kind(annotations: &HashMap<String, String>, entrypoint: &Path) -> PayloadKind {
    if annotations_say_wasm(annotations) || has_wasm_magic(entrypoint).unwrap_or(false) {
        PayloadKind::Wasm
    } else {
        PayloadKind::Native
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("m");
        std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
        let elf = dir.path().join("e");
        std::fs::write(&elf, b"\x7fELF").unwrap();
        let none = HashMap::new();
        assert_eq!(payload_kind(&none, &wasm), PayloadKind::Wasm);
        assert_eq!(payload_kind(&none, &elf), PayloadKind::Native);
        let crun = HashMap::from([(HANDLER_ANNOTATION.to_string(), "wasm".to_string())]);
        assert_eq!(payload_kind(&crun, &elf), PayloadKind::Wasm);
        let compat = HashMap::from([(VARIANT_ANNOTATION.to_string(), "compat".to_string())]);
        assert_eq!(payload_kind(&compat, &elf), PayloadKind::Wasm);
    }
}
