//! Sans-IO iSCSI target protocol (RFC 7143): PDU codec, login and text negotiation, sequence numbers
