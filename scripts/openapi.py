#!/usr/bin/env python3
"""Writes docs/openapi.json, the node API's OpenAPI 3.1 document.

The document is the API's contract, checked by schemathesis against a live node
(node/tests/it/openapi.rs). Edit this script, run it, and commit both: the node serves
the JSON file it was built with.

Conventions (node/src/api/input.rs): a request that does not have the shape written
here is 400; a request with this shape that breaks a rule a schema cannot state
(check characters, known regions, signatures, the policy data) is 422; every error is
an Error object.
"""
import json
import pathlib

DOMAINS = [
    "licensing", "project_approval", "securities", "financial_institutions",
    "internet_services", "fiscal_funding", "public_resource_trading", "procurement",
    "concessions", "market_entry", "honours", "inspection", "public_services",
    "financing", "insurance", "market_services", "travel", "high_consumption",
    "disclosure", "industry_self_regulation",
]

USCC = {"type": "string", "pattern": "^[0-9A-Za-z]{18}$",
        "description": "Unified Social Credit Code (GB 32100-2015); the check character "
                       "is verified against entries, not required to ask",
        "example": "91350100M000100Y43"}
PERSON = {"type": "string", "pattern": "^[0-9]{17}[0-9Xx]$",
          "description": "Resident identity number (GB 11643-1999), clear: sent only in "
                         "request bodies, hashed by the node, never stored or logged",
          "example": "11010519491231002X"}
REGION = {"type": "string", "pattern": "^[0-9]{6}$",
          "description": "Region code (GB/T 2260)", "example": "310000"}
DEPARTMENT = {"type": "string", "pattern": "^[0-9]{6}:[a-z0-9-]{1,32}$",
              "description": "Department id REGION:UNIT", "example": "310000:scjgj"}
RECORD_ID = {"type": "string", "pattern": "^[0-9A-Fa-f]{64}$",
             "description": "Record id, 64 hex digits"}
U64 = {"type": "integer", "minimum": 0, "maximum": 18446744073709551615}

ERROR = {"$ref": "#/components/schemas/Error"}


def err(description):
    return {"description": description,
            "content": {"application/json": {"schema": ERROR}}}


def ok(description, schema=None, status="200"):
    body = {"description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}}}
    return {status: body}


NO_QUORUM = {
    "503": err("Proofs asked for, but the members did not cosign a federation checkpoint "
               "in time (code no_quorum), or the heads moved under the proof (code "
               "proofs_unavailable); retry shortly, or ask without proofs"),
}

AUTH = {
    "401": err("No client certificate, or one this node did not issue (code "
               "no_client_certificate or unknown_certificate)"),
    "403": err("The certificate's department is revoked, or the call is for the "
               "operator only (code department_revoked or not_allowed)"),
    "503": err("The node cannot serve this now (store unavailable, shutting down); "
               "retry later"),
}
BODY = {
    "400": err("The body is not the documented JSON: the message names the field"),
    "408": err("The body did not arrive within api_request_body_timeout_ms"),
    "413": err("The body, or a field, exceeds its limit"),
    "415": err("The body is not sent as application/json"),
    "422": err("The request has the documented shape but breaks a rule (check "
               "character, region, date of birth, signature, policy data): the "
               "message names the field and the rule"),
}


def op(summary, responses, parameters=None, body=None, public=False, description=None):
    o = {"summary": summary, "responses": responses}
    if description:
        o["description"] = description
    if parameters:
        o["parameters"] = parameters
    if body:
        o["requestBody"] = {"required": True,
                            "content": {"application/json": {"schema": body}}}
    if public:
        o["security"] = []
    return o


def query(name, schema, required=False, description=None):
    p = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        p["description"] = description
    return p


def path(name, schema):
    return {"name": name, "in": "path", "required": True, "schema": schema}


def merge(*parts):
    out = {}
    for p in parts:
        out.update(p)
    return dict(sorted(out.items()))


OBJECT = {"type": "object"}

paths = {
    "/v1/records": {"post": op(
        "Submit a department-signed record (any body kind)",
        merge(ok("Durable in the region's log (after the fsync that covers it)",
                 {"$ref": "#/components/schemas/Receipt"}, "201"), AUTH, BODY, {
            "401": err("No or unknown client certificate, a department not registered "
                       "in its region, or a signature that does not verify"),
            "403": err("Another department's record, a role the department lacks, "
                       "another region's entry, or a revoked department"),
            "409": err("Already recorded, or the record's state forbids it (code conflict)"),
            "422": err("The body bytes break a rule of the protocol (code invalid), or "
                       "a measure, period or class the policy data does not allow "
                       "(code not_applicable); the message cites the rule"),
            "503": err("Cannot persist, or writes paused (own log not yet confirmed "
                       "with a peer, failed fsync, audit log unwritable); nothing was "
                       "acknowledged"),
        }),
        body={"$ref": "#/components/schemas/SubmitRecord"})},
    "/v1/check": {
        "get": op(
            "应查必查 for an organisation: what applies to it in a domain, with evidence",
            merge(ok("CheckAnswer (protocol::check) and last_contact_ms per region; with "
                     "proofs=true a ProvenAnswer (protocol::federation), nothing added: the "
                     "answer computed from the proven evidence at the federation "
                     "checkpoint's cosigned time, the checkpoint and its leaves (each "
                     "region's witnessed head with the time it was signed, or its "
                     "exclusion), per-region map and inclusion proofs, the proofs against "
                     "excluded regions, the signed manifest if asked, and the answering "
                     "node's signature"),
                  AUTH, NO_QUORUM, {
                      "400": err("A parameter without its documented shape, or person= "
                                 "(persons are checked with POST so that their number is "
                                 "never in a URL)"),
                      "422": err("A code whose structure breaks GB 32100-2015"),
                  }),
            parameters=[query("uscc", USCC, True),
                        query("domain", {"type": "string", "enum": DOMAINS}, True),
                        query("proofs", {"type": "boolean"}, False,
                              "Answer with proofs verifiable offline (credfed verify)"),
                        query("manifest", {"type": "boolean"}, False,
                              "With proofs, carry the signed manifest in the answer")]),
        "post": op(
            "应查必查 for an organisation or a person: the number travels in the body only",
            merge(ok("CheckAnswer (protocol::check) and last_contact_ms per region; with "
                     "proofs a ProvenAnswer (protocol::federation), as for GET"),
                  AUTH, BODY, NO_QUORUM),
            body={"$ref": "#/components/schemas/CheckRequest"}),
    },
    "/v1/persons/refs": {"post": op(
        "The form records carry (keyed hash, mask, name) for persons given by clear "
        "number; nothing is stored, the audit line keeps masks only",
        merge(ok("The refs, in the request's order",
                 {"$ref": "#/components/schemas/PersonRefsAnswer"}), AUTH, BODY),
        body={"$ref": "#/components/schemas/PersonRefsRequest"})},
    "/v1/entries/{id}": {"get": op(
        "A list entry with its state, late disclosure and overdue objections",
        merge(ok("The entry"), AUTH, {
            "400": err("id is not 64 hex digits"),
            "404": err("No such entry in this node's replica (it may not have "
                       "replicated yet)"),
        }),
        parameters=[path("id", RECORD_ID)])},
    "/v1/actions/{id}": {"get": op(
        "A joint action with, per target region, what was accepted, executed, "
        "declined and why, and mandatory measures declined",
        merge(ok("The action"), AUTH, {
            "400": err("id is not 64 hex digits"),
            "404": err("No such action in this node's replica"),
        }),
        parameters=[path("id", RECORD_ID)])},
    "/v1/departments": {"get": op(
        "Registered departments (of one province with region=)",
        merge(ok("Department records", {"type": "array", "items": OBJECT}), AUTH, {
            "400": err("region is not six digits"),
            "422": err("region is not a region of GB/T 2260"),
        }),
        parameters=[query("region", REGION)])},
    "/v1/departments/{id}": {"get": op(
        "A department as registered",
        merge(ok("The department record"), AUTH, {
            "400": err("id is not REGION:UNIT"),
            "404": err("No such department registered"),
            "422": err("id names a region that is not one of GB/T 2260"),
        }),
        parameters=[path("id", DEPARTMENT)])},
    "/v1/heads": {"get": op("Every region's head held", merge(ok("Heads by region"), AUTH))},
    "/v1/log/{region}": {"get": op(
        "A region's envelopes, verbatim (hex), from a sequence number",
        merge(ok("A page of envelopes", {"$ref": "#/components/schemas/LogPage"}), AUTH, {
            "400": err("A parameter without its documented shape"),
            "422": err("region is not a region of GB/T 2260"),
        }),
        parameters=[path("region", REGION),
                    query("from", U64, description="First sequence number (default 1)"),
                    query("limit", U64, description="At most this many (at most 256)")])},
    "/v1/log/{region}/checkpoint": {"get": op(
        "The region's Merkle tree head as this replica holds it, the region's own signed "
        "checkpoint (C2SP note) on its own node, the latest witnessed checkpoint held, "
        "what this node cosigned, and split-view evidence",
        merge(ok("Tree head", {"$ref": "#/components/schemas/TreeHead"}), AUTH, {
            "400": err("region is not six digits"),
            "422": err("region is not a region of GB/T 2260"),
        }),
        parameters=[path("region", REGION)])},
    "/v1/log/{region}/proof/inclusion": {"get": op(
        "RFC 9162 inclusion proof of the envelope at seq in the region's tree of size",
        merge(ok("The proof", {"$ref": "#/components/schemas/InclusionProof"}), AUTH, {
            "400": err("A parameter without its documented shape"),
            "404": err("This node holds fewer than size records of the region"),
            "422": err("region is not a region of GB/T 2260, or seq is not in 1..=size"),
        }),
        parameters=[path("region", REGION),
                    query("seq", U64, True, "The envelope's sequence number"),
                    query("size", U64, True, "Tree size, e.g. a checkpoint's")])},
    "/v1/log/{region}/proof/consistency": {"get": op(
        "RFC 9162 consistency proof of the region's tree from one size to another",
        merge(ok("The proof", {"$ref": "#/components/schemas/ConsistencyProof"}), AUTH, {
            "400": err("A parameter without its documented shape"),
            "404": err("This node holds fewer than to records of the region"),
            "422": err("region is not a region of GB/T 2260, or from is after to"),
        }),
        parameters=[path("region", REGION),
                    query("from", U64, True, "The older tree size"),
                    query("to", U64, True, "The newer tree size")])},
    "/v1/peers": {"get": op("Connected members and what they hold",
                            merge(ok("Peers"), AUTH))},
    "/v1/status": {"get": op("This node's status: heads, peers, writes open, audit",
                             merge(ok("Status"), AUTH))},
    "/v1/stats": {"get": op(
        "Tracking statistics (跟踪问效): entries by list, category, region and state; "
        "action targets by status; overdue acknowledgements and objections; mandatory "
        "measures declined per region", merge(ok("Statistics"), AUTH))},
    "/v1/audit": {"get": op(
        "The last 1000 audit lines, newest first (operator only)",
        merge(ok("Audit lines", {"type": "array", "items": OBJECT}), AUTH))},
    "/v1/admin/partition": {"post": op(
        "In-node drill faults (nodes with drill_faults = true; operator only)",
        merge(ok("The faults now in force",
                 {"$ref": "#/components/schemas/PartitionRequest"}), AUTH, BODY, {
            "404": err("This node is not a drill's (drill_faults is off)"),
            "422": err("A blocked region that is not one of GB/T 2260"),
        }),
        body={"$ref": "#/components/schemas/PartitionRequest"})},
    "/v1/openapi.json": {"get": op("This document", ok("The OpenAPI document"),
                                   public=True)},
    "/metrics": {"get": {
        "summary": "Prometheus metrics (public if metrics_public, else with a certificate)",
        "security": [{}, {"mutualTLS": []}],
        "responses": merge({"200": {"description": "Text exposition format",
                                    "content": {"text/plain": {"schema": {"type": "string"}}}}},
                           AUTH, {"403": err("metrics_public is false and the caller is "
                                             "not allowed to read metrics")}),
    }},
}

schemas = {
    "Error": {"type": "object", "additionalProperties": False,
              "required": ["code", "field", "message"],
              "properties": {
                  "code": {"type": "string", "description": "machine-readable, e.g. invalid, not_applicable, writes_paused"},
                  "field": {"type": ["string", "null"], "description": "dotted path of the field at fault"},
                  "message": {"type": "string", "description": "what is wrong and what to do"}}},
    "SubmitRecord": {"type": "object", "additionalProperties": False,
                     "required": ["author", "body", "signature"],
                     "properties": {
                         "author": DEPARTMENT,
                         "body": {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$",
                                  "maxLength": 65536,
                                  "description": "hex of the body's canonical bytes (docs/protocol.md)"},
                         "signature": {"type": "string", "pattern": "^[0-9A-Fa-f]{128}$",
                                       "description": "hex Ed25519 signature under the body-sig tag"}}},
    "Receipt": {"type": "object", "required": ["region", "seq", "hash", "envelope"],
                "properties": {"region": {"type": "string"}, "seq": {"type": "integer"},
                               "hash": {"type": "string"}, "envelope": {"type": "string"}}},
    "CheckRequest": {"type": "object", "additionalProperties": False,
                     "required": ["domain"],
                     "properties": {"uscc": USCC, "person": PERSON,
                                    "domain": {"type": "string", "enum": DOMAINS},
                                    "proofs": {"type": "boolean",
                                               "description": "answer with proofs verifiable offline"},
                                    "manifest": {"type": "boolean",
                                                 "description": "with proofs, carry the signed "
                                                                "manifest (about 30 KB) so that "
                                                                "the answer verifies with the "
                                                                "authority key alone"}},
                     "oneOf": [{"required": ["uscc"]}, {"required": ["person"]}]},
    "PersonRefsRequest": {"type": "object", "additionalProperties": False,
                          "required": ["persons"],
                          "properties": {"persons": {
                              "type": "array", "minItems": 1, "maxItems": 512,
                              "items": {"type": "object", "additionalProperties": False,
                                        "required": ["number", "name"],
                                        "properties": {
                                            "number": PERSON,
                                            "name": {"type": "string", "minLength": 1,
                                                     "maxLength": 100, "pattern": "\\S",
                                                     "description": "as on the decision document"}}}}}},
    "PersonRefsAnswer": {"type": "object", "required": ["refs"], "properties": {"refs": {
        "type": "array", "items": {"type": "object", "required": ["id_hash", "masked", "name"],
                                   "properties": {
                                       "id_hash": {"type": "string", "description": "hex"},
                                       "masked": {"type": "string", "description": "2-digit provincial prefix and 16 '*'"},
                                       "name": {"type": "string"}}}}}},
    "LogPage": {"type": "object", "required": ["region", "from", "envelopes", "received_ms"],
                "properties": {"region": {"type": "string"}, "from": {"type": "integer"},
                               "envelopes": {"type": "array", "items": {"type": "string"}},
                               "received_ms": {"type": "array"}}},
    "TreeHead": {"type": "object",
                 "required": ["region", "size", "root", "note", "witnessed", "cosigned",
                              "split_view_evidence"],
                 "properties": {"region": {"type": "string"}, "size": {"type": "integer"},
                                "root": {"type": "string", "description": "hex"},
                                "note": {"type": ["string", "null"],
                                         "description": "C2SP signed checkpoint, from the region's own node"},
                                "witnessed": {"type": ["string", "null"],
                                              "description": "the latest checkpoint held with a quorum of cosignatures"},
                                "cosigned": {"type": ["object", "null"],
                                             "description": "the largest checkpoint this node cosigned as a witness"},
                                "split_view_evidence": {"type": ["string", "null"],
                                                        "description": "a witnessed checkpoint that contradicts this replica"}}},
    "InclusionProof": {"type": "object", "required": ["region", "seq", "size", "root", "proof"],
                       "properties": {"region": {"type": "string"}, "seq": {"type": "integer"},
                                      "size": {"type": "integer"},
                                      "root": {"type": "string"},
                                      "proof": {"type": "array", "items": {"type": "string"}}}},
    "ConsistencyProof": {"type": "object",
                         "required": ["region", "from", "to", "from_root", "to_root", "proof"],
                         "properties": {"region": {"type": "string"}, "from": {"type": "integer"},
                                        "to": {"type": "integer"},
                                        "from_root": {"type": "string"},
                                        "to_root": {"type": "string"},
                                        "proof": {"type": "array", "items": {"type": "string"}}}},
    "PartitionRequest": {"type": "object", "additionalProperties": False,
                         "required": ["blocked"],
                         "properties": {
                             "blocked": {"type": "array", "items": REGION,
                                         "description": "regions this node must not talk to; empty heals"},
                             "loss_percent": {"type": "integer", "minimum": 0, "maximum": 100}}},
}

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "credfed node API",
        "version": "2",
        "description": (
            "HTTPS/JSON API of a credfed provincial node. Writes carry a department's "
            "Ed25519 signature over the body's canonical bytes (docs/protocol.md). "
            "Every error is an Error object {code, field, message}. A request without "
            "the shape documented here is 400; one with this shape that breaks a rule a "
            "schema cannot state (check characters, regions, signatures, the policy "
            "data) is 422. Unknown paths answer 404 and undocumented methods 405, before "
            "authentication. Authentication is mutual TLS with a client certificate the "
            "node issued (credfed-node issue-client-cert)."),
    },
    "security": [{"mutualTLS": []}],
    "paths": paths,
    "components": {
        "securitySchemes": {"mutualTLS": {
            "type": "mutualTLS",
            "description": "A client certificate issued by this node to a registered, "
                           "unrevoked department (or the node's operator certificate)"}},
        "schemas": schemas,
    },
}

out = pathlib.Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {out}")
