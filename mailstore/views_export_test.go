package mailstore

// ViewCount returns the folder views a Store keeps and the messages they
// list.
func (s *Store) ViewCount() (views int, messages int64) { return s.views.len() }

// SetViewLimits changes the bounds of the folder views for a test and
// returns what puts them back.
func SetViewLimits(views int, messages int64) (restore func()) {
	v, m := maxViews, maxViewMessages
	maxViews, maxViewMessages = views, messages
	return func() { maxViews, maxViewMessages = v, m }
}
