#![no_main]
//! What the agent's Kubernetes workload attestor reads from outside: a kubelet `/pods` answer
//! and a `/proc/<pid>/cgroup` file. Any bytes, never a panic; a parsed list is matched against
//! the real cgroup samples of testdata/k8s.
use libfuzzer_sys::fuzz_target;
use vouch_agent::{parse_pod_list, pod_of_cgroup};

const CGROUPS: [&str; 3] = [
    include_str!("../../testdata/k8s/spire_cgroups_pid_in_pod.txt"),
    include_str!("../../testdata/k8s/spire_systemd_crio_cgroups_pid_in_pod.txt"),
    include_str!("../../testdata/k8s/spire_cgroups_pid_in_crio_pod.txt"),
];

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = parse_pod_list(data) {
        for c in CGROUPS {
            if let Ok(cg) = pod_of_cgroup(c) {
                let _ = list.selectors(&cg);
            }
        }
    }
    if let Ok(cg) = pod_of_cgroup(&String::from_utf8_lossy(data)) {
        let _ = cg.pod_uid;
    }
});
