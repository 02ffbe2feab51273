package orders

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/shopmesh/shopmesh/services/internal/fault"
	"github.com/shopmesh/shopmesh/services/internal/stockapi"
)

// ProductsClient is the Catalog served by the products service.
type ProductsClient struct {
	baseURL string
	client  *http.Client
}

// NewProductsClient returns a client of the products service at baseURL.
func NewProductsClient(baseURL string, client *http.Client) *ProductsClient {
	return &ProductsClient{baseURL: strings.TrimRight(baseURL, "/"), client: client}
}

// Reserve asks products to reserve lines for orderID.
func (p *ProductsClient) Reserve(ctx context.Context, token string, orderID uuid.UUID, lines []stockapi.Line) (stockapi.Reservation, error) {
	body, err := json.Marshal(stockapi.ReservationRequest{OrderID: orderID, Items: lines})
	if err != nil {
		return stockapi.Reservation{}, err
	}
	var res stockapi.Reservation
	err = p.do(ctx, http.MethodPost, "/reservations", token, body, &res, http.StatusOK, http.StatusCreated)
	return res, err
}

// Release gives back the stock reserved for orderID; releasing nothing is not an error.
func (p *ProductsClient) Release(ctx context.Context, token string, orderID uuid.UUID) error {
	return p.do(ctx, http.MethodDelete, "/reservations/"+orderID.String(), token, nil, nil, http.StatusNoContent)
}

// Confirm makes orderID's reservation permanent; ErrReservationGone when it expired first.
func (p *ProductsClient) Confirm(ctx context.Context, orderID uuid.UUID) error {
	err := p.do(ctx, http.MethodPost, "/reservations/"+orderID.String()+"/confirm", "", nil, nil, http.StatusOK)
	if errors.Is(err, fault.ErrNotFound) {
		return ErrReservationGone
	}
	return err
}

// Ping checks that products answers its liveness probe.
func (p *ProductsClient) Ping(ctx context.Context) error {
	return p.do(ctx, http.MethodGet, "/healthz", "", nil, nil, http.StatusOK)
}

func (p *ProductsClient) do(ctx context.Context, method, path, token string, body []byte, out any, ok ...int) error {
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("products request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("products %s %s: %w", method, path, ctx.Err())
		}
		return fault.New(fault.ErrUnavailable, "the products service is unreachable; retry later")
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, code := range ok {
		if resp.StatusCode == code {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(data, out); err != nil {
				return fault.New(fault.ErrUnavailable, "the products service sent an unreadable answer")
			}
			return nil
		}
	}
	var problem struct {
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(data, &problem)
	switch resp.StatusCode {
	case http.StatusConflict: // not enough stock
		return fault.New(fault.ErrConflict, problem.Detail)
	case http.StatusUnprocessableEntity: // an unknown product, for one
		return fault.New(fault.ErrInvalid, problem.Detail)
	case http.StatusNotFound:
		return fault.New(fault.ErrNotFound, problem.Detail)
	}
	return fault.New(fault.ErrUnavailable, fmt.Sprintf("the products service answered %d to %s %s; retry later", resp.StatusCode, method, path))
}
