// Package deploy holds no code: its test checks the Kubernetes Indexed Job
// manifest and the GitHub Actions workflow beside it against the schemas
// of the systems that run them (neither can run here). It is a module of
// its own so that the root module does not take on Kubernetes' API types.
package deploy
