//! Inspection of a client's SDP offer before it reaches str0m.

/// Whether an SDP offer asks to send audio or video to us: an `m=audio` or `m=video` section that
/// is `sendrecv` or `sendonly` (`sendrecv` when no direction is given, RFC 8866 §6.7) and not
/// rejected with port 0.
pub fn offer_publishes(sdp: &str) -> bool {
    let mut publishes = false;
    let mut in_media = false;
    let mut direction_sends = true;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            publishes |= in_media && direction_sends;
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("0");
            in_media = matches!(kind, "audio" | "video") && port != "0";
            direction_sends = true;
        } else if in_media {
            match line {
                "a=recvonly" | "a=inactive" => direction_sends = false,
                "a=sendrecv" | "a=sendonly" => direction_sends = true,
                _ => {}
            }
        }
    }
    publishes || (in_media && direction_sends)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    #[test]
    fn sending_sections_publish() {
        let send = format!("{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n");
        let default = format!("{HEAD}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n");
        let mixed = format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n"
        );
        assert!(offer_publishes(&send));
        assert!(offer_publishes(&default));
        assert!(offer_publishes(&mixed));
    }

    #[test]
    fn receive_only_and_data_offers_do_not_publish() {
        let recv = format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n"
        );
        let data = format!("{HEAD}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        let rejected = format!("{HEAD}m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n");
        assert!(!offer_publishes(&recv));
        assert!(!offer_publishes(&data));
        assert!(!offer_publishes(&rejected));
        assert!(!offer_publishes("garbage"));
    }
}
