//! The checked-in OpenAPI document (`docs/openapi.json`) must equal the one generated from
//! `schema/`. Regenerate with `FERRITE_BLESS=1 cargo test --test openapi_drift`.

#[test]
fn checked_in_openapi_matches_schema() {
    let reg = ferrite::schema::Registry::load().expect("schema loads");
    let generated = serde_json::to_string_pretty(&ferrite::schema::openapi_document(&reg))
        .expect("json")
        + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var("FERRITE_BLESS").is_ok() {
        std::fs::write(&path, &generated).expect("write");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/openapi.json is stale: run FERRITE_BLESS=1 cargo test --test openapi_drift"
    );
    // Every route is in it, with its privilege.
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("json");
    for r in reg.routes() {
        let op = &doc["paths"][format!("/api/v1{}", r.path)][r.method.to_lowercase()];
        assert_eq!(
            op["operationId"],
            r.operation_id.as_str(),
            "{} missing",
            r.operation_id
        );
        if let Some(p) = &r.privilege {
            assert_eq!(op["x-ferrite-privilege"]["privilege"], p.as_str());
        }
    }
}
