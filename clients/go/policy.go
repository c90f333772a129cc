// Package policy is the Go client of the replication policy sidecar (freightliner.policy.v1).
//
// The generated stubs are in the v1 package (import "github.com/freightliner/policy/v1");
// this package adds helpers to read the rich error details every sidecar error status carries:
// a google.rpc.ErrorInfo whose Reason is the sidecar's error code (the same value as in its logs,
// metrics and Job.ErrorCode) and, for a bad request field, a google.rpc.BadRequest.
package policy

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Domain is ErrorInfo.Domain on every error the sidecar sends.
const Domain = "policy-sidecar"

// ErrorInfo returns the sidecar's ErrorInfo carried by err (a gRPC status error), or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// ErrorCode returns the sidecar error code of err ("invalid_argument", "not_found",
// "policy_unavailable", ...), or "" when err carries none.
func ErrorCode(err error) string {
	return ErrorInfo(err).GetReason()
}

// FieldViolations returns the request fields err names as invalid (dotted paths such as
// "image.digest"), each with its problem; empty when err is not about a request field.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var out []*errdetails.BadRequest_FieldViolation
	for _, detail := range st.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			out = append(out, bad.GetFieldViolations()...)
		}
	}
	return out
}
