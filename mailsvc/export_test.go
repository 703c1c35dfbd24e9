package mailsvc

// SplitAny exports splitAny, the split of SMTP envelope addresses, to the
// tests.
var SplitAny = splitAny
