// Drives a running registry daemon through a published Go client of OpenOrch or 1Backend,
// unchanged, calling every method of its RegistrySvcAPI. The generated models are strict:
// they refuse an answer with a field they do not know or without a field they require, so
// a call that decodes is an answer in that project's shape; this program checks the status
// codes and the values besides.
//
//	go run . -url <base-url> -token <admin-token> -dialect openorch|1backend
//
// The client package is imported as `registryclient`: tests/published_clients.rs builds
// it from the client's unchanged sources (docs/testing.md, "Go clients"). Prints one
// line per call ("ok ..." or "FAIL ...: why") and exits 1 when any call failed. It registers
// only 127.x.y.z addresses, none of which need to answer.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"

	openapi "registryclient"
)

var failures int

// report prints the outcome of one call; `problems` empty means it passed.
func report(label string, problems []string) {
	if len(problems) == 0 {
		fmt.Printf("ok %s\n", label)
		return
	}
	failures++
	fmt.Printf("FAIL %s: %v\n", label, problems)
}

// answered lists the problems of a call expected to succeed with `status`.
func answered(response *http.Response, err error, status int) []string {
	var problems []string
	if err != nil {
		problems = append(problems, explain(err))
	}
	if response == nil {
		return append(problems, "no answer")
	}
	if response.StatusCode != status {
		problems = append(problems, fmt.Sprintf("HTTP %d, the original answers %d", response.StatusCode, status))
	}
	return problems
}

// refused lists the problems of a call expected to be refused with `status` and an answer
// the client reads as its error model.
func refused(response *http.Response, err error, status int) []string {
	if err == nil {
		return []string{fmt.Sprintf("HTTP %d, expected %d", response.StatusCode, status)}
	}
	var problems []string
	if response == nil || response.StatusCode != status {
		problems = append(problems, fmt.Sprintf("%s, expected HTTP %d", explain(err), status))
	}
	apiErr, ok := err.(*openapi.GenericOpenAPIError)
	if !ok {
		return append(problems, explain(err))
	}
	var body openapi.RegistrySvcErrorResponse
	if decodeErr := json.Unmarshal(apiErr.Body(), &body); decodeErr != nil {
		problems = append(problems, fmt.Sprintf("the error answer does not decode: %v", decodeErr))
	} else if body.GetError() == "" {
		problems = append(problems, "no `error` message for a person")
	}
	return problems
}

func explain(err error) string {
	if apiErr, ok := err.(*openapi.GenericOpenAPIError); ok {
		body := string(apiErr.Body())
		if len(body) > 300 {
			body = body[:300]
		}
		return fmt.Sprintf("%s %s", apiErr.Error(), body)
	}
	return err.Error()
}

// model reads `text` into a model of the client, as a caller's program would build it.
func model[T any](text string) T {
	var value T
	if err := json.Unmarshal([]byte(text), &value); err != nil {
		panic(fmt.Sprintf("the test's own %T does not decode: %v", value, err))
	}
	return value
}

// holds tells whether `actual` (any model) holds `expected` (JSON): the same values,
// objects with at least its keys.
func holds(actual any, expected string) bool {
	encoded, err := json.Marshal(actual)
	if err != nil {
		return false
	}
	var got, want any
	_ = json.Unmarshal(encoded, &got)
	_ = json.Unmarshal([]byte(expected), &want)
	return contains(got, want)
}

func contains(got, want any) bool {
	switch want := want.(type) {
	case map[string]any:
		got, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for key, value := range want {
			if !contains(got[key], value) {
				return false
			}
		}
		return true
	case []any:
		got, ok := got.([]any)
		if !ok || len(got) != len(want) {
			return false
		}
		for i := range want {
			if !contains(got[i], want[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(got, want)
	}
}

type run struct {
	ctx     context.Context
	api     openapi.RegistrySvcAPI
	url     string
	dialect string
}

// --- Definitions ----------------------------------------------------------------------

const imageDefinition = `{
  "id": "go-image",
  "image": {"name": "hashicorp/http-echo", "internalPorts": [8080]},
  "ports": [{"internal": 8080, "host": 8887}],
  "envars": [{"key": "MODE", "value": "test"}],
  "apiSpecs": [{"url": "http://127.0.0.1:1/openapi.json", "protocolType": "OpenAPI", "version": "3.0.0", "metadata": {"team": "core"}}],
  "clients": [{"language": "Go", "url": "http://127.0.0.1:1/client.go"}]
}`

// repositoryDefinition in the dialect's spelling of the repository's ports.
func (r run) repositoryDefinition() string {
	ports := "ports"
	if r.dialect == "1backend" {
		ports = "internalPorts"
	}
	return fmt.Sprintf(`{
  "id": "go-repository",
  "repository": {"url": "http://127.0.0.1:1/example/service.git", "version": "v1.2.3",
    "buildContext": ".", "containerFile": "Dockerfile", %q: [9090]}
}`, ports)
}

func (r run) definitions() {
	saved := []string{imageDefinition, r.repositoryDefinition()}
	for _, text := range saved {
		definition := model[openapi.RegistrySvcDefinition](text)
		request := openapi.NewRegistrySvcSaveDefinitionRequest()
		request.SetDefinition(definition)
		_, response, err := r.api.SaveDefinition(r.ctx).Body(*request).Execute()
		report("SaveDefinition "+definition.Id, answered(response, err, http.StatusCreated))
	}

	list, response, err := r.api.ListDefinitions(r.ctx).Execute()
	problems := answered(response, err, http.StatusOK)
	for _, text := range saved {
		want := model[openapi.RegistrySvcDefinition](text)
		found := false
		for _, got := range list.GetDefinitions() {
			if got.Id == want.Id {
				found = true
				if !holds(got, text) {
					problems = append(problems, fmt.Sprintf("%s read back as %+v", want.Id, got))
				}
			}
		}
		if !found {
			problems = append(problems, want.Id+" not listed")
		}
	}
	report("ListDefinitions", problems)

	bad := openapi.NewRegistrySvcSaveDefinitionRequest()
	bad.SetDefinition(*openapi.NewRegistrySvcDefinition("bad id with spaces"))
	_, response, err = r.api.SaveDefinition(r.ctx).Body(*bad).Execute()
	report("SaveDefinition with a bad definition is a 400", refused(response, err, http.StatusBadRequest))

	for _, id := range []string{"go-image", "go-repository"} {
		response, err := r.api.DeleteDefinition(r.ctx, id).Execute()
		report("DeleteDefinition "+id, answered(response, err, http.StatusNoContent))
	}
	response, err = r.api.DeleteDefinition(r.ctx, "go-image").Execute()
	report("DeleteDefinition of an absent id is a 404", refused(response, err, http.StatusNotFound))
}

// --- Instances ------------------------------------------------------------------------

// Each registration (as JSON) and what the instance it makes must hold.
var registrations = []struct{ label, body, expect string }{
	{"url form, no id",
		`{"url": "http://127.0.0.1:1/url-form", "deploymentId": "depl_go"}`,
		`{"url": "http://127.0.0.1:1/url-form", "scheme": "http", "host": "127.0.0.1", "port": 1, "path": "/url-form", "deploymentId": "depl_go"}`},
	{"url form, with id",
		`{"id": "go-url-id", "url": "http://127.0.0.2:2"}`,
		`{"id": "go-url-id", "url": "http://127.0.0.2:2", "host": "127.0.0.2", "port": 2}`},
	{"parts form, no id",
		`{"url": "", "scheme": "http", "host": "127.0.0.3", "port": 8080, "path": "/parts"}`,
		`{"url": "http://127.0.0.3:8080/parts", "scheme": "http", "host": "127.0.0.3", "port": 8080, "path": "/parts"}`},
	{"parts form, with id",
		`{"id": "go-parts-id", "url": "", "scheme": "http", "ip": "127.0.0.4", "host": "127.0.0.4", "port": 9090}`,
		`{"id": "go-parts-id", "url": "http://127.0.0.4:9090", "ip": "127.0.0.4", "host": "127.0.0.4", "port": 9090}`},
	{"url with an explicit path",
		`{"url": "http://127.0.0.5:7070", "path": "/explicit"}`,
		`{"url": "http://127.0.0.5:7070", "host": "127.0.0.5", "port": 7070, "path": "/explicit"}`},
}

func (r run) instances() {
	for _, registration := range registrations {
		request := model[openapi.RegistrySvcRegisterInstanceRequest](registration.body)
		_, response, err := r.api.RegisterInstance(r.ctx).Body(request).Execute()
		report("RegisterInstance ("+registration.label+")", answered(response, err, http.StatusCreated))
	}

	all, response, err := r.api.ListInstances(r.ctx).Execute()
	report("ListInstances (no filter)", answered(response, err, http.StatusOK))
	listed := all.GetInstances()
	var made []openapi.RegistrySvcInstance
	var problems []string
	for _, registration := range registrations {
		want := model[map[string]any](registration.expect)
		var found *openapi.RegistrySvcInstance
		for i := range listed {
			if id, ok := want["id"]; ok && listed[i].Id == id || !ok && listed[i].Url == want["url"] {
				found = &listed[i]
			}
		}
		if found == nil {
			problems = append(problems, registration.label+": not listed")
			continue
		}
		made = append(made, *found)
		if !holds(*found, registration.expect) {
			problems = append(problems, fmt.Sprintf("%s: read back as %+v", registration.label, *found))
		}
	}
	report("registered instances read back as registered", problems)

	filters := []struct {
		param string
		field func(*openapi.RegistrySvcInstance) string
		apply func(openapi.ApiListInstancesRequest, string) openapi.ApiListInstancesRequest
	}{
		{"scheme", (*openapi.RegistrySvcInstance).GetScheme, openapi.ApiListInstancesRequest.Scheme},
		{"ip", (*openapi.RegistrySvcInstance).GetIp, openapi.ApiListInstancesRequest.Ip},
		{"deploymentId", (*openapi.RegistrySvcInstance).GetDeploymentId, openapi.ApiListInstancesRequest.DeploymentId},
		{"host", (*openapi.RegistrySvcInstance).GetHost, openapi.ApiListInstancesRequest.Host},
		{"ip2", (*openapi.RegistrySvcInstance).GetIp, openapi.ApiListInstancesRequest.Ip2},
		{"id", (*openapi.RegistrySvcInstance).GetId, openapi.ApiListInstancesRequest.Id},
		{"slug", (*openapi.RegistrySvcInstance).GetSlug, openapi.ApiListInstancesRequest.Slug},
	}
	for _, filter := range filters {
		var target *openapi.RegistrySvcInstance
		for i := range made {
			if filter.field(&made[i]) != "" {
				target = &made[i]
				break
			}
		}
		if target == nil {
			report("ListInstances by "+filter.param, []string{"no registered instance has a value to filter on"})
			continue
		}
		value := filter.field(target)
		answer, response, err := filter.apply(r.api.ListInstances(r.ctx), value).Execute()
		problems := answered(response, err, http.StatusOK)
		hit := false
		for _, got := range answer.GetInstances() {
			hit = hit || got.Id == target.Id
			if filter.field(&got) != value {
				problems = append(problems, fmt.Sprintf("%s=%s answered %s", filter.param, value, got.Id))
			}
		}
		if !hit {
			problems = append(problems, fmt.Sprintf("%s=%s did not answer %s", filter.param, value, target.Id))
		}
		report("ListInstances by "+filter.param, problems)

		// The original reads an empty value as no filter.
		answer, response, err = filter.apply(r.api.ListInstances(r.ctx), "").Execute()
		problems = answered(response, err, http.StatusOK)
		if len(answer.GetInstances()) != len(listed) {
			problems = append(problems, fmt.Sprintf("%d instances, expected all %d", len(answer.GetInstances()), len(listed)))
		}
		report("ListInstances with an empty "+filter.param, problems)
	}

	malformed := model[openapi.RegistrySvcRegisterInstanceRequest](`{"url": "not a url"}`)
	_, response, err = r.api.RegisterInstance(r.ctx).Body(malformed).Execute()
	report("RegisterInstance with a malformed url is a 400", refused(response, err, http.StatusBadRequest))
	for _, instance := range made {
		response, err := r.api.RemoveInstance(r.ctx, instance.Id).Execute()
		report("RemoveInstance "+instance.Id, answered(response, err, http.StatusNoContent))
	}
	absent := "go-absent"
	if len(made) > 0 {
		absent = made[0].Id
	}
	response, err = r.api.RemoveInstance(r.ctx, absent).Execute()
	report("RemoveInstance of an absent id is a 404", refused(response, err, http.StatusNotFound))
}

// --- Nodes ----------------------------------------------------------------------------

func (r run) nodes() {
	self, response, err := r.api.SelfNode(r.ctx).Execute()
	report("SelfNode", answered(response, err, http.StatusOK))
	node := self.GetNode()

	ids := func(answer *openapi.RegistrySvcListNodesResponse) []string {
		var listed []string
		for _, n := range answer.GetNodes() {
			listed = append(listed, n.Id)
		}
		return listed
	}
	listsSelf := func(label string, answer *openapi.RegistrySvcListNodesResponse, response *http.Response, err error) {
		problems := answered(response, err, http.StatusOK)
		found := false
		for _, id := range ids(answer) {
			found = found || id == node.Id
		}
		if !found {
			problems = append(problems, fmt.Sprintf("this node (%s) is not listed in %v", node.Id, ids(answer)))
		}
		report(label, problems)
	}
	answer, response, err := r.api.ListNodes(r.ctx).Execute()
	listsSelf("ListNodes (no body)", answer, response, err)
	empty := openapi.NewRegistrySvcListNodesRequest()
	empty.SetIds([]string{})
	answer, response, err = r.api.ListNodes(r.ctx).Body(*empty).Execute()
	listsSelf("ListNodes (empty ids)", answer, response, err)
	only := openapi.NewRegistrySvcListNodesRequest()
	only.SetIds([]string{node.Id})
	answer, response, err = r.api.ListNodes(r.ctx).Body(*only).Execute()
	problems := answered(response, err, http.StatusOK)
	if listed := ids(answer); !reflect.DeepEqual(listed, []string{node.Id}) {
		problems = append(problems, fmt.Sprintf("ids listed %v, expected [%s]", listed, node.Id))
	}
	report("ListNodes (with ids)", problems)

	response, err = r.api.DeleteNode(r.ctx, "http://127.0.0.1:1").Execute()
	report("DeleteNode of an absent node is a 404", refused(response, err, http.StatusNotFound))
	// The daemon's own node: removed now, back at its next heartbeat.
	response, err = r.api.DeleteNode(r.ctx, node.Url).Execute()
	report("DeleteNode (this node)", answered(response, err, http.StatusNoContent))
}

func main() {
	url := flag.String("url", "", "the daemon's base URL")
	token := flag.String("token", "", "an admin token")
	dialect := flag.String("dialect", "openorch", "openorch or 1backend")
	flag.Parse()
	if *url == "" || *token == "" {
		flag.Usage()
		os.Exit(2)
	}
	config := openapi.NewConfiguration()
	config.Servers = openapi.ServerConfigurations{{URL: *url}}
	ctx := context.WithValue(context.Background(), openapi.ContextAPIKeys, map[string]openapi.APIKey{
		"BearerAuth": {Key: *token, Prefix: "Bearer"},
	})
	r := run{ctx: ctx, api: openapi.NewAPIClient(config).RegistrySvcAPI, url: *url, dialect: *dialect}
	r.definitions()
	r.instances()
	r.nodes()
	r.echo()
	if failures > 0 {
		fmt.Printf("%d calls failed\n", failures)
		os.Exit(1)
	}
}
