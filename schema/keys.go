// Package schema owns the layout of the replicated state: every key under
// the cluster prefix (mailcluster/<cluster>/ in Consul, the whole file of a
// standalone node) is built here, and nowhere else. Keys are relative to
// the cluster prefix.
package schema

import "fmt"

// Key prefixes and single keys of the replicated state.
const (
	PrefixSettings       = "settings/"            // settings/<file>/<section>/<key>: one ini value
	PrefixDomains        = "domains/"             // domains/<domain>: Domain (JSON)
	PrefixAccounts       = "accounts/"            // accounts/<domain>/<mailbox>: Account (JSON, bcrypt hash)
	PrefixUsage          = "usage/"               // usage/<domain>/<mailbox>: Usage published by the primary
	PrefixReports        = "reports/"             // reports/<node>: ReportMark, the last report sequence applied per node and the folders it changed
	PrefixServers        = "servers/"             // servers/<node>: a registered member of the cluster
	PrefixCertificates   = "certs/"               // certs/<name>: Certificate, key sealed
	PrefixBlockedIPs     = "screening/ips/"       // screening/ips/<ip>: BlockedIP
	PrefixFrozenAccounts = "screening/accounts/"  // screening/accounts/<address>: FrozenAccount
	PrefixClock          = "clock/"               // clock/<node>: the primary's latest clock reading of a node
	PrefixGlobalAdmins   = "index/admins/"        // index/admins/<address>: present while the account is a global administrator
	PrefixAliases        = "aliases/"             // aliases/<domain>/<name>: Alias (JSON)
	PrefixAliasTargets   = "index/alias-targets/" // index/alias-targets/<target address>/<alias address>: present while the alias points there
	PrefixLists          = "lists/"               // lists/<domain>/<name>: MailingList (JSON)
	PrefixListMembers    = "listmembers/"         // listmembers/<domain>/<list>/<member>: ListMember (JSON); member is a mailbox, "group:<name>" or "ext:<address>"
	PrefixGroups         = "groups/"              // groups/<domain>/<name>: Group (JSON)
	PrefixGroupMembers   = "groupmembers/"        // groupmembers/<domain>/<group>/<mailbox>: present while the account is a member
	PrefixDKIM           = "dkim/"                // dkim/<domain>: DKIMKey (JSON, private key sealed)
	PrefixFeed           = "feed/"                // feed/<epoch>/<seq>: one committed change set (not part of the served state)
	KeyHead              = "meta/head"            // the feed's head: epoch and last sequence number
	KeyPrimary           = "primary"              // the election lock, held by the primary's session
	KeyBootstrap         = "meta/bootstrapped"    // set once the first primary created the defaults
	KeyAdminIndexBuilt   = "meta/index-admins"    // set once the global-administrator index covers every account
	KeySharedProbe       = "meta/shared-probe"    // the token every node must read on the shared path
)

// Domain is the key of a domain's record.
func Domain(name string) string { return PrefixDomains + name }

// AccountPrefix is the prefix of a domain's accounts.
func AccountPrefix(domain string) string { return PrefixAccounts + domain + "/" }

// Account is the key of an account's record.
func Account(domain, mailbox string) string { return AccountPrefix(domain) + mailbox }

// UsagePrefix is the prefix of a domain's published usage records.
func UsagePrefix(domain string) string { return PrefixUsage + domain + "/" }

// Usage is the key of an account's published usage.
func Usage(domain, mailbox string) string { return UsagePrefix(domain) + mailbox }

// Report is the key of the last usage report applied from a node.
func Report(node string) string { return PrefixReports + node }

// Server is the key of a registered member.
func Server(node string) string { return PrefixServers + node }

// Certificate is the key of a certificate record.
func Certificate(name string) string { return PrefixCertificates + name }

// BlockedIP is the key of an address's block record.
func BlockedIP(ip string) string { return PrefixBlockedIPs + ip }

// FrozenAccount is the key of an account's freeze record.
func FrozenAccount(address string) string { return PrefixFrozenAccounts + address }

// Clock is the key of a node's latest clock reading.
func Clock(node string) string { return PrefixClock + node }

// SettingsFilePrefix is the prefix of one ini file's values.
func SettingsFilePrefix(file string) string { return PrefixSettings + file + "/" }

// Setting is the key of one ini value.
func Setting(file, section, key string) string { return SettingsFilePrefix(file) + section + "/" + key }

// GlobalAdmin is the index key that marks address as a global administrator
// (maintained in the same transaction as the account record).
func GlobalAdmin(address string) string { return PrefixGlobalAdmins + address }

// FeedEpoch is the prefix of one epoch's feed entries.
func FeedEpoch(epoch string) string { return PrefixFeed + epoch + "/" }

// Feed is the key of one feed entry; the sequence number is zero-padded so
// that keys sort in sequence order.
func Feed(epoch string, seq uint64) string { return fmt.Sprintf("%s%020d", FeedEpoch(epoch), seq) }

// AliasPrefix is the prefix of a domain's aliases.
func AliasPrefix(domain string) string { return PrefixAliases + domain + "/" }

// Alias is the key of an alias record.
func Alias(domain, name string) string { return AliasPrefix(domain) + name }

// AliasTargetPrefix is the prefix of the aliases pointing at an account.
func AliasTargetPrefix(target string) string { return PrefixAliasTargets + target + "/" }

// AliasTarget is the index key that marks alias (an address) as pointing
// at target (an address); written in the same transaction as the alias.
func AliasTarget(target, alias string) string { return AliasTargetPrefix(target) + alias }

// ListPrefix is the prefix of a domain's mailing lists.
func ListPrefix(domain string) string { return PrefixLists + domain + "/" }

// List is the key of a mailing list record.
func List(domain, name string) string { return ListPrefix(domain) + name }

// ListMemberPrefix is the prefix of one list's members.
func ListMemberPrefix(domain, list string) string {
	return PrefixListMembers + domain + "/" + list + "/"
}

// ListMemberAccount is the key of an account (by mailbox) in a list.
func ListMemberAccount(domain, list, mailbox string) string {
	return ListMemberPrefix(domain, list) + mailbox
}

// ListMemberGroup is the key of a group in a list.
func ListMemberGroup(domain, list, group string) string {
	return ListMemberPrefix(domain, list) + "group:" + group
}

// ListMemberExternal is the key of an outside address (normalized, of
// another domain) in a list.
func ListMemberExternal(domain, list, address string) string {
	return ListMemberPrefix(domain, list) + "ext:" + address
}

// GroupPrefix is the prefix of a domain's groups.
func GroupPrefix(domain string) string { return PrefixGroups + domain + "/" }

// Group is the key of a group record.
func Group(domain, name string) string { return GroupPrefix(domain) + name }

// GroupMemberPrefix is the prefix of one group's members.
func GroupMemberPrefix(domain, group string) string {
	return PrefixGroupMembers + domain + "/" + group + "/"
}

// GroupMember is the key of an account (by mailbox) in a group.
func GroupMember(domain, group, mailbox string) string {
	return GroupMemberPrefix(domain, group) + mailbox
}
