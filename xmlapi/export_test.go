package xmlapi

// WriteOperations is the handler's classification of its operations
// (true: a write), for the read-only tests.
var WriteOperations = writeOperations
