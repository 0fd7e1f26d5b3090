//! Keys and the federation manifest.

use super::*;

pub fn key(mode: Output, cmd: KeyCmd) -> Res {
    match cmd {
        KeyCmd::Gen { kind, out } => {
            let secret =
                credfed_client::keys::random_secret().map_err(|e| invalid(e.to_string()))?;
            let k = Keypair::from_secret(secret);
            credfed_client::keys::write_secret(&out, &hex::encode(secret))
                .map_err(|e| invalid(format!("{e:#}")))?;
            // The public half beside it: what a department hands to its operator.
            let mut public_file = out.clone().into_os_string();
            public_file.push(".pub");
            let public_file = std::path::PathBuf::from(public_file);
            credfed_client::keys::write_public(&public_file, &k.public().to_hex())
                .map_err(|e| invalid(format!("{e:#}")))?;
            let mut v =
                json!({"file": out, "public_file": public_file, "public_key": k.public().to_hex()});
            if kind == KeyKind::Node {
                v["peer_id"] = json!(credfed_client::keys::peer_id(&k.public()));
            }
            emit(mode, &v, || {
                format!(
                    "wrote {} (mode 0600, keep it) and {} (the public key, to hand over)\npublic key {}",
                    out.display(),
                    public_file.display(),
                    k.public()
                )
            });
            Ok(())
        }
        KeyCmd::Csr { department, out } => {
            let dept = credfed_protocol::ids::DepartmentId::parse(&department, "--department")
                .map_err(|e| invalid(e.to_string()))?;
            let stem = dept.to_string().replace(':', "-");
            let key_file = out.join(format!("{stem}.key"));
            let csr_file = out.join(format!("{stem}.csr"));
            if let Some(existing) = [&key_file, &csr_file].into_iter().find(|p| p.exists()) {
                return Err(invalid(format!(
                    "{}: already exists; a key is never overwritten (choose another --out)",
                    existing.display()
                )));
            }
            let tls_key = rcgen::KeyPair::generate().map_err(|e| invalid(e.to_string()))?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                .map_err(|e| invalid(e.to_string()))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, dept.to_string());
            let csr = params
                .serialize_request(&tls_key)
                .and_then(|r| r.pem())
                .map_err(|e| invalid(e.to_string()))?;
            std::fs::create_dir_all(&out)
                .map_err(|e| invalid(format!("{}: {e}", out.display())))?;
            credfed_client::keys::write_secret(&key_file, &tls_key.serialize_pem())
                .map_err(|e| invalid(format!("{e:#}")))?;
            credfed_client::keys::write_public(&csr_file, &csr)
                .map_err(|e| invalid(format!("{e:#}")))?;
            emit(mode, &json!({"key": key_file, "csr": csr_file}), || {
                format!(
                    "wrote {} (mode 0600, keep it) and {} (give it to the node's operator: credfed-node issue-client-cert --department {dept} --csr …)",
                    key_file.display(),
                    csr_file.display()
                )
            });
            Ok(())
        }
        KeyCmd::Show { key } => {
            let k = read_key(&key)?;
            let peer = credfed_client::keys::peer_id(&k.public());
            let v = json!({"public_key": k.public().to_hex(), "peer_id_if_node_key": peer});
            emit(mode, &v, || {
                format!("public key {}\npeer id (if a node key) {peer}", k.public())
            });
            Ok(())
        }
    }
}

#[derive(serde::Deserialize)]
struct MembersFile {
    member: Vec<MemberRow>,
}

#[derive(serde::Deserialize)]
struct MemberRow {
    region: String,
    name: String,
    node_key: String,
    operator_key: String,
    #[serde(default)]
    addresses: Vec<String>,
}

pub fn federation(mode: Output, cmd: FederationCmd) -> Res {
    match cmd {
        FederationCmd::Init {
            members,
            federation_id,
            authority,
            valid_days,
            version,
            witnesses,
            faults_tolerated,
            out,
        } => {
            let text = std::fs::read_to_string(&members)
                .map_err(|e| invalid(format!("{}: {e}", members.display())))?;
            let mf: MembersFile = toml::from_str(&text)
                .map_err(|e| invalid(format!("{}: {e}", members.display())))?;
            let mut ms = Vec::new();
            for m in mf.member {
                ms.push(Member {
                    region: RegionCode::parse(&m.region, "member.region")
                        .map_err(|e| invalid(e.to_string()))?,
                    name: m.name,
                    node_key: PublicKey::from_hex(&m.node_key)
                        .map_err(|e| invalid(format!("member.node_key: {e}")))?,
                    operator_key: PublicKey::from_hex(&m.operator_key)
                        .map_err(|e| invalid(format!("member.operator_key: {e}")))?,
                    addresses: m.addresses,
                });
            }
            let now = now().0;
            let mut m = Manifest::for_build(
                federation_id,
                version,
                Timestamp(now),
                Timestamp(now + valid_days * 86_400_000),
                public_key_arg(&authority, true)?,
                ms,
            );
            if let Some(n) = witnesses {
                m.policy.witness = credfed_protocol::manifest::WitnessPolicy::AtLeast(n);
            }
            if let Some(f) = faults_tolerated {
                m.policy.faults_tolerated = f;
            }
            m.validate().map_err(|e| {
                let text = e.to_string();
                if text.contains("policy.faults_tolerated") {
                    invalid(format!("{text}; change --faults-tolerated or leave it out"))
                } else if text.contains("policy.witness") {
                    invalid(format!("{text}; change --witnesses or leave it out"))
                } else {
                    invalid(text)
                }
            })?;
            write_json(&out, &m)?;
            emit(
                mode,
                &json!({"draft": out, "members": m.members.len(),
                        "faults_tolerated": m.policy.faults_tolerated,
                        "witness_quorum": m.policy.witness_quorum(m.members.len()),
                        "federation_quorum": m.policy.federation_quorum(m.members.len())}),
                || {
                    let n = m.members.len();
                    format!(
                        "wrote draft {} with {n} members, tolerating {} faulty: a region's head is witnessed by {} of the {} others, a federation checkpoint needs {} of {n}; sign it with `credfed federation sign`",
                        out.display(),
                        m.policy.faults_tolerated,
                        m.policy.witness_quorum(n),
                        n.saturating_sub(1),
                        m.policy.federation_quorum(n)
                    )
                },
            );
            Ok(())
        }
        FederationCmd::AddMember {
            draft,
            region,
            name,
            node_key,
            operator_key,
            addresses,
        } => {
            let mut m = read_draft(&draft)?;
            let region =
                RegionCode::parse(&region, "--region").map_err(|e| invalid(e.to_string()))?;
            m.members.retain(|x| x.region != region);
            m.members.push(Member {
                region,
                name,
                node_key: PublicKey::from_hex(&node_key)
                    .map_err(|e| invalid(format!("--node-key: {e}")))?,
                operator_key: public_key_arg(&operator_key, false)?,
                addresses,
            });
            m.members.sort_by_key(|x| x.region);
            m.validate().map_err(|e| invalid(e.to_string()))?;
            write_json(&draft, &m)?;
            emit(mode, &json!({"members": m.members.len()}), || {
                format!("{} now has {} members", draft.display(), m.members.len())
            });
            Ok(())
        }
        FederationCmd::RemoveMember { draft, region } => {
            let mut m = read_draft(&draft)?;
            let before = m.members.len();
            m.members.retain(|x| x.region.to_string() != region);
            if m.members.len() == before {
                return Err(invalid(format!(
                    "--region {region} is not a member of the draft"
                )));
            }
            write_json(&draft, &m)?;
            emit(mode, &json!({"members": m.members.len()}), || {
                format!("{} now has {} members", draft.display(), m.members.len())
            });
            Ok(())
        }
        FederationCmd::Sign { draft, key, out } => {
            let m = read_draft(&draft)?;
            // Every node refuses an expired manifest: signing one only hides the
            // mistake until it is installed.
            if m.expires_at <= now() {
                return Err(invalid(format!(
                    "{}: expires_at {} has passed; a node refuses an expired manifest — make a new draft (credfed federation init --valid-days N) or ask for a later expiry",
                    draft.display(),
                    m.expires_at.cst_string()
                )));
            }
            let signed = m
                .sign(&read_key(&key)?)
                .map_err(|e| invalid(e.to_string()))?;
            write_json(&out, &signed)?;
            emit(
                mode,
                &json!({"manifest": out, "hash": signed.hash().to_hex()}),
                || {
                    format!(
                        "signed manifest v{} written to {} (hash {})",
                        m.version,
                        out.display(),
                        signed.hash()
                    )
                },
            );
            Ok(())
        }
        FederationCmd::Verify {
            manifest,
            authority_key,
        } => {
            let signed: SignedManifest = serde_json::from_str(
                &std::fs::read_to_string(&manifest).map_err(|e| invalid(e.to_string()))?,
            )
            .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?;
            let key = PublicKey::from_hex(&authority_key)
                .map_err(|e| invalid(format!("--authority-key: {e}")))?;
            let now = now();
            let m = signed
                .verify(&key, now)
                .map_err(|e| Failure::new(exit::UNVERIFIED, e.to_string()))?;
            emit(
                mode,
                &json!({"valid": true, "federation_id": m.federation_id, "version": m.version, "members": m.members.len()}),
                || {
                    format!(
                        "valid: {} v{} with {} members",
                        m.federation_id,
                        m.version,
                        m.members.len()
                    )
                },
            );
            Ok(())
        }
        FederationCmd::PersonKey {
            draft,
            from,
            evaluations_per_day,
            burst,
        } => super::person_key::set_in_draft(mode, &draft, &from, evaluations_per_day, burst),
        FederationCmd::Show { manifest } => {
            let m = read_any_manifest(&manifest)?;
            let v = serde_json::to_value(&m).map_err(|e| invalid(e.to_string()))?;
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = m
                    .members
                    .iter()
                    .map(|x| {
                        vec![
                            x.region.to_string(),
                            x.name.clone(),
                            x.node_key.to_hex().chars().take(16).collect(),
                            x.addresses.join(" "),
                        ]
                    })
                    .collect();
                format!(
                    "{} v{} (issued {}, expires {})\n{}",
                    m.federation_id,
                    m.version,
                    m.issued_at.cst_string(),
                    m.expires_at.cst_string(),
                    table(&["region", "name", "node key", "addresses"], &rows)
                )
            });
            Ok(())
        }
    }
}
