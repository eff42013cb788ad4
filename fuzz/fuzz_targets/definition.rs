//! Any text, read as JSON and as YAML (the CLI reads both, the API JSON), is a definition
//! or an error; a definition accepted once reads back equal from its own JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_types::DefinitionInput;

fuzz_target!(|text: &str| {
    let inputs = [
        serde_json::from_str::<DefinitionInput>(text).ok(),
        serde_yaml_ng::from_str::<DefinitionInput>(text).ok(),
    ];
    for input in inputs.into_iter().flatten() {
        if let Ok(definition) = input.into_definition() {
            let json = serde_json::to_string(&definition).unwrap();
            let again = serde_json::from_str::<DefinitionInput>(&json)
                .unwrap()
                .into_definition();
            assert_eq!(again.ok(), Some(definition));
        }
    }
});
