// Calls a real, running sidecar from Go: Decide, Replicate, WatchJob and the rich error details.
//
// The sidecar, its OPA and real registries are started by tests/e2e/test_go_client.py, which
// pushes one image and runs `go test` with where to find them in the environment:
//
//	POLICY_SIDECAR_ADDR        host:port of the sidecar's gRPC listener
//	POLICY_SIDECAR_TEST_IMAGE  registry/repository:tag of the pushed image (registry = inventory name)
//	POLICY_SIDECAR_TEST_DIGEST its digest
//	POLICY_SIDECAR_TEST_ROUTES the registries its decision must route it to, comma-separated
//
// Run outside that test, it fails naming what is missing (it never skips).
package policy_test

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/freightliner/policy"
	policyv1 "github.com/freightliner/policy/v1"
)

type target struct {
	addr, registry, repository, tag, digest string
	routes                                  []string
}

func env(t *testing.T) target {
	t.Helper()
	get := func(name string) string {
		value := os.Getenv(name)
		if value == "" {
			t.Fatalf("%s is not set: run this test through tests/e2e/test_go_client.py "+
				"(it starts the sidecar and the registries)", name)
		}
		return value
	}
	image := get("POLICY_SIDECAR_TEST_IMAGE")
	registry, rest, _ := strings.Cut(image, "/")
	colon := strings.LastIndex(rest, ":")
	if colon < 0 {
		t.Fatalf("POLICY_SIDECAR_TEST_IMAGE %q: want registry/repository:tag", image)
	}
	routes := strings.Split(get("POLICY_SIDECAR_TEST_ROUTES"), ",")
	slices.Sort(routes)
	return target{
		addr: get("POLICY_SIDECAR_ADDR"), registry: registry, repository: rest[:colon],
		tag: rest[colon+1:], digest: get("POLICY_SIDECAR_TEST_DIGEST"), routes: routes,
	}
}

func client(t *testing.T, addr string) policyv1.PolicyServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return policyv1.NewPolicyServiceClient(conn)
}

func (tg target) request() *policyv1.DecideRequest {
	return &policyv1.DecideRequest{
		Image: &policyv1.Image{
			Registry: tg.registry, Repository: tg.repository, Tag: tg.tag, Digest: tg.digest,
		},
		Caller: &policyv1.Caller{Subject: "freightliner"},
	}
}

func TestDecide(t *testing.T) {
	tg := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	answer, err := client(t, tg.addr).Decide(ctx, tg.request())
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	decision := answer.GetDecision()
	if !decision.GetAllow() {
		t.Fatalf("Decide: not allowed: %v", decision.GetReasons())
	}
	var routed []string
	for _, route := range decision.GetRoutes() {
		routed = append(routed, route.GetRegistry())
	}
	slices.Sort(routed)
	if !slices.Equal(routed, tg.routes) {
		t.Fatalf("Decide routed to %v, want %v (denied: %v)", routed, tg.routes, decision.GetDenied())
	}
	if len(answer.GetDecisionId()) != 32 || answer.GetBundleRevision() == "" || answer.GetDegraded() {
		t.Fatalf("Decide: decision id %q, bundle revision %q, degraded %v",
			answer.GetDecisionId(), answer.GetBundleRevision(), answer.GetDegraded())
	}
}

func TestReplicateThenWatchJobToTheEnd(t *testing.T) {
	tg := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	stub := client(t, tg.addr)
	answer, err := stub.Replicate(ctx, &policyv1.ReplicateRequest{Request: tg.request()})
	if err != nil {
		t.Fatalf("Replicate: %v", err)
	}
	if len(answer.GetJobIds()) != len(tg.routes) {
		t.Fatalf("Replicate: jobs %v, want one per route %v", answer.GetJobIds(), tg.routes)
	}
	var destinations []string
	for _, id := range answer.GetJobIds() {
		stream, err := stub.WatchJob(ctx, &policyv1.GetJobRequest{JobId: id})
		if err != nil {
			t.Fatalf("WatchJob %s: %v", id, err)
		}
		var last *policyv1.Job
		updates := 0
		for {
			job, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("WatchJob %s after %d updates: %v", id, updates, err)
			}
			last, updates = job, updates+1
		}
		if last == nil || last.GetState() != "succeeded" {
			t.Fatalf("WatchJob %s ended in %v", id, last)
		}
		if last.GetDigest() != tg.digest || last.GetBytesTotal() == 0 ||
			last.GetBytesDone() != last.GetBytesTotal() {
			t.Fatalf("WatchJob %s: digest %s, bytes %d/%d", id, last.GetDigest(),
				last.GetBytesDone(), last.GetBytesTotal())
		}
		registry, _, _ := strings.Cut(last.GetDestination(), "/")
		destinations = append(destinations, registry)
		t.Logf("job %s -> %s: %s after %d updates", id, last.GetDestination(), last.GetState(), updates)
	}
	slices.Sort(destinations)
	if !slices.Equal(destinations, tg.routes) {
		t.Fatalf("jobs copy to %v, want %v", destinations, tg.routes)
	}
}

func TestErrorsCarryErrorInfoAndFieldViolations(t *testing.T) {
	tg := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stub := client(t, tg.addr)

	bad := tg.request()
	bad.Image.Digest = "sha256:xyz"
	_, err := stub.Decide(ctx, bad)
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("Decide with a bad digest: %v", err)
	}
	var info *errdetails.ErrorInfo
	var violations []*errdetails.BadRequest_FieldViolation
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		default:
			t.Fatalf("unexpected detail %T: %v", detail, detail)
		}
	}
	if info == nil || info.GetReason() != "invalid_argument" || info.GetDomain() != policy.Domain {
		t.Fatalf("ErrorInfo %v", info)
	}
	if len(info.GetMetadata()["decision_id"]) != 32 {
		t.Fatalf("ErrorInfo metadata has no decision id: %v", info.GetMetadata())
	}
	if len(violations) != 1 || violations[0].GetField() != "image.digest" {
		t.Fatalf("field violations %v", violations)
	}
	if got := policy.FieldViolations(err); len(got) != 1 || got[0].GetField() != "image.digest" {
		t.Fatalf("policy.FieldViolations: %v", got)
	}

	_, err = stub.GetJob(ctx, &policyv1.GetJobRequest{JobId: "no-such-job"})
	if status.Code(err) != codes.NotFound || policy.ErrorCode(err) != "not_found" {
		t.Fatalf("GetJob of an unknown job: %v (code %q)", err, policy.ErrorCode(err))
	}
	if got := policy.ErrorInfo(err).GetMetadata()["job_id"]; got != "no-such-job" {
		t.Fatalf("GetJob ErrorInfo names job %q", got)
	}
}
