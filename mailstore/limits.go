package mailstore

import "strconv"

// The message size limit of every way mail enters a mailbox (SMTP DATA,
// IMAP APPEND): [SMTP] MaxMessageSize in the main ini file.
const (
	SectionSMTP           = "SMTP"
	KeyMaxMessageSize     = "MaxMessageSize" // bytes; default 26214400 (25 MiB)
	DefaultMaxMessageSize = 25 << 20
)

// MaxMessageSize returns [SMTP] MaxMessageSize, a positive number of
// bytes; anything else is DefaultMaxMessageSize.
func MaxMessageSize(setting func(section, key, def string) string) int64 {
	if n, err := strconv.ParseInt(setting(SectionSMTP, KeyMaxMessageSize, ""), 10, 64); err == nil && n > 0 {
		return n
	}
	return DefaultMaxMessageSize
}
