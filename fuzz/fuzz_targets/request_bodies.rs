//! Request bodies from untrusted input, through the decoder every JSON endpoint uses
//! (`decode_json`, with its field paths and error codes): never a panic, whatever the bytes
//! and whichever body type; decoded cadences and versions are then validated as the
//! services would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scheduled_runs::domain::model::{ConnectionConfig, VersionBody};
use scheduled_runs::http::extract::decode_json;
use scheduled_runs::http::views::{
    AutoArchiveRequest, CreateProjectRequest, PutMemberRequest, SlackIntegrationRequest,
};
use scheduled_runs::services::runs::RunRequest;
use scheduled_runs::services::schedules::{CreateSchedule, PatchSchedule};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => {
            if let Ok(s) = decode_json::<CreateSchedule>(body) {
                let _ = s.cadence.compile();
            }
        }
        1 => {
            if let Ok(p) = decode_json::<PatchSchedule>(body)
                && let Some(c) = p.cadence
            {
                let _ = c.compile();
            }
        }
        2 => {
            let _ = decode_json::<RunRequest>(body);
        }
        3 => {
            if let Ok(v) = decode_json::<VersionBody>(body) {
                let _ = scheduled_runs::domain::cells::validate_version(&v, &|name| {
                    name == "warehouse"
                });
            }
        }
        4 => {
            let _ = decode_json::<ConnectionConfig>(body);
        }
        5 => {
            let _ = decode_json::<CreateProjectRequest>(body);
        }
        6 => {
            let _ = decode_json::<PutMemberRequest>(body);
        }
        7 => {
            let _ = decode_json::<AutoArchiveRequest>(body);
        }
        _ => {
            let _ = decode_json::<SlackIntegrationRequest>(body);
        }
    }
});
