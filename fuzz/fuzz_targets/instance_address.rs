//! Any URL or parts give an address or an error; an address accepted once is accepted
//! again from its own URL, with the same parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_types::RegisterInstanceRequest;

fuzz_target!(|fields: (&str, &str, &str, &str, Option<u16>, &str)| {
    let (url, scheme, host, ip, port, path) = fields;
    let request = RegisterInstanceRequest {
        url: url.into(),
        scheme: scheme.into(),
        host: host.into(),
        ip: ip.into(),
        port,
        path: path.into(),
        ..Default::default()
    };
    if let Ok(address) = request.address() {
        let again = RegisterInstanceRequest {
            url: address.url.clone(),
            ..Default::default()
        }
        .address()
        .expect("an accepted address's own URL is accepted");
        assert_eq!(
            (&again.scheme, &again.host, again.port, &again.path),
            (&address.scheme, &address.host, address.port, &address.path)
        );
    }
});
