//go:build onebackend

package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	openapi "registryclient"
)

// sent is what the echo calls send: a query for EchoGet and a body for EchoPost and
// EchoPut, which the generated methods have no way to give, so a transport adds them.
const sent = `{"name": "go", "tags": ["a"], "nested": {"n": 1}}`

type addsEchoInput struct{}

func (addsEchoInput) RoundTrip(request *http.Request) (*http.Response, error) {
	request = request.Clone(request.Context())
	if request.Method == http.MethodGet {
		request.URL.RawQuery = "probe=1"
	} else {
		request.Body = io.NopCloser(strings.NewReader(sent))
		request.ContentLength = int64(len(sent))
		request.Header.Set("Content-Type", "application/json")
	}
	return http.DefaultTransport.RoundTrip(request)
}

// echo calls 1Backend's echo endpoints, which answer what they were sent.
func (r run) echo() {
	config := openapi.NewConfiguration()
	config.Servers = openapi.ServerConfigurations{{URL: r.url}}
	config.HTTPClient = &http.Client{Transport: addsEchoInput{}}
	api := openapi.NewAPIClient(config).RegistrySvcAPI

	got, response, err := api.EchoGet(r.ctx).Execute()
	problems := answered(response, err, http.StatusOK)
	if !holds(got, `{"probe": "1"}`) || len(got) != 1 {
		problems = append(problems, fmt.Sprintf("EchoGet?probe=1 answered %v", got))
	}
	report("EchoGet", problems)

	echoes := func(label string, got map[string]interface{}, response *http.Response, err error) {
		problems := answered(response, err, http.StatusOK)
		if !holds(got, sent) || len(got) != 3 {
			problems = append(problems, fmt.Sprintf("answered %v", got))
		}
		report(label, problems)
	}
	got, response, err = api.EchoPost(r.ctx).Execute()
	echoes("EchoPost", got, response, err)
	got, response, err = api.EchoPut(r.ctx).Execute()
	echoes("EchoPut", got, response, err)
}
