//! The supervision report as a spreadsheet for 通报 (article 二十三): one sheet of
//! figures in the CSV's columns (numbers as numbers, so that a supervisor can sum and
//! sort), one of the reasons given for mandatory declines, one saying what the report
//! covers.

use credfed_protocol::report::CSV_COLUMNS;
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use serde_json::Value;

/// The workbook of a `/v1/reports` answer, as bytes.
pub fn report_workbook(report: &Value) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let empty = Vec::new();
    let lines = report["lines"].as_array().unwrap_or(&empty);

    let sheet = book.add_worksheet().set_name("通报")?;
    for (c, name) in CSV_COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *name, &bold)?;
    }
    for (r, line) in lines.iter().enumerate() {
        let row = r as u32 + 1;
        for (c, name) in CSV_COLUMNS.iter().enumerate() {
            let col = c as u16;
            match &line[*name] {
                Value::Number(n) => {
                    sheet.write_number(row, col, n.as_f64().unwrap_or(0.0))?;
                }
                Value::String(s) => {
                    sheet.write_string(row, col, s)?;
                }
                // A region's own line has no department; a median of nothing is blank.
                _ => {}
            }
        }
    }
    sheet.set_freeze_panes(1, 3)?;
    sheet.autofilter(0, 0, lines.len() as u32, CSV_COLUMNS.len() as u16 - 1)?;

    let reasons = book.add_worksheet().set_name("强制措施拒绝理由")?;
    for (c, name) in ["period", "region", "department", "reason"]
        .iter()
        .enumerate()
    {
        reasons.write_string_with_format(0, c as u16, *name, &bold)?;
    }
    let mut row = 1;
    for line in lines.iter().filter(|l| l["department"].is_string()) {
        for reason in line["mandatory_decline_reasons"]
            .as_array()
            .unwrap_or(&empty)
        {
            for (c, v) in [
                &line["period"],
                &line["region"],
                &line["department"],
                reason,
            ]
            .iter()
            .enumerate()
            {
                reasons.write_string(row, c as u16, v.as_str().unwrap_or(""))?;
            }
            row += 1;
        }
    }

    let checks = book.add_worksheet().set_name("查询")?;
    for (c, name) in ["period", "region", "department", "domain", "checks"]
        .iter()
        .enumerate()
    {
        checks.write_string_with_format(0, c as u16, *name, &bold)?;
    }
    let mut row = 1;
    for line in lines.iter().filter(|l| l["department"].is_string()) {
        if let Some(by) = line["checks_by_domain"].as_object() {
            for (domain, n) in by {
                for (c, v) in [&line["period"], &line["region"], &line["department"]]
                    .iter()
                    .enumerate()
                {
                    checks.write_string(row, c as u16, v.as_str().unwrap_or(""))?;
                }
                checks.write_string(row, 3, domain)?;
                checks.write_number(row, 4, n.as_f64().unwrap_or(0.0))?;
                row += 1;
            }
        }
    }

    let about = book.add_worksheet().set_name("说明")?;
    for (r, (k, v)) in [
        ("period", &report["period"]),
        ("from", &report["from"]),
        ("to", &report["to"]),
    ]
    .iter()
    .enumerate()
    {
        about.write_string_with_format(r as u32, 0, *k, &bold)?;
        about.write_string(r as u32, 1, v.as_str().unwrap_or(""))?;
    }
    about.write_string(
        3,
        0,
        "Each figure is counted where the work lay and in the period it arose (docs/policy.md, reports); a region's line has an empty department.",
    )?;
    book.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Read;

    fn sheet_xml(book: &[u8], name: &str) -> String {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(book)).unwrap();
        let mut out = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut out).unwrap();
        out
    }

    /// The workbook holds every column, a number as a number, a department's decline
    /// reason on its own sheet, and what the report covers.
    #[test]
    fn a_report_becomes_a_workbook_with_numbers_and_reasons() {
        let report = json!({
            "period": "month", "from": "2026-11-01", "to": "2026-11-30",
            "lines": [
                {"period": "2026-11", "region": "620000", "department": null,
                 "actions_asked": 3, "mandatory_declined": 1, "median_acknowledgement_hours": 5.5,
                 "mandatory_decline_reasons": ["本省另案处理"]},
                {"period": "2026-11", "region": "620000", "department": "620000:impl",
                 "actions_asked": 0, "mandatory_declined": 1,
                 "mandatory_decline_reasons": ["本省另案处理"],
                 "checks": 3, "checks_by_domain": {"licensing": 3}}
            ]
        });
        let book = report_workbook(&report).unwrap();
        assert!(book.starts_with(b"PK"), "an XLSX is a zip archive");
        let shared = sheet_xml(&book, "xl/sharedStrings.xml");
        for name in CSV_COLUMNS {
            assert!(shared.contains(name), "column {name} missing");
        }
        assert!(shared.contains("本省另案处理") && shared.contains("620000:impl"));
        let figures = sheet_xml(&book, "xl/worksheets/sheet1.xml");
        assert!(figures.contains("<v>5.5</v>"), "the median is a number");
        let workbook = sheet_xml(&book, "xl/workbook.xml");
        assert!(workbook.contains("通报") && workbook.contains("强制措施拒绝理由"));
        // The reasons sheet lists the department's reason once (not the region's copy).
        let reasons = sheet_xml(&book, "xl/worksheets/sheet2.xml");
        assert_eq!(reasons.matches("<row ").count(), 2, "{reasons}");
        let checks = sheet_xml(&book, "xl/worksheets/sheet3.xml");
        assert!(checks.contains("<v>3</v>"), "{checks}");
        assert!(shared.contains("licensing"));
    }
}
