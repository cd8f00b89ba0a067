package ttlcache

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestTTLExpiresAndEvicts(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	c := NewTTL[string, int](clk, 2)
	c.Put("a", 1, 10*time.Second)
	c.Put("b", 2, 20*time.Second)
	c.Put("zero", 9, 0) // not stored
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %d, %v", v, ok)
	}
	if _, ok := c.Get("zero"); ok {
		t.Fatal("a zero ttl stored a value")
	}
	// Full: the entry closest to expiry (a) makes room.
	c.Put("c", 3, 30*time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("a was not evicted")
	}
	if _, ok := c.Get("b"); !ok {
		t.Fatal("b was evicted before a")
	}
	clk.SetTime(clk.Now().Add(25 * time.Second))
	if _, ok := c.Get("b"); ok {
		t.Fatal("b outlived its ttl")
	}
	if v, ok := c.Get("c"); !ok || v != 3 {
		t.Fatalf("Get(c) = %d, %v", v, ok)
	}
	c.DeleteFunc(func(k string) bool { return k == "c" })
	if _, ok := c.Get("c"); ok {
		t.Fatal("DeleteFunc kept c")
	}
}

func TestSet(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s := NewSet[string](clk, time.Minute, 2)
	s.Add("x")
	if !s.Has("x") || s.Has("y") {
		t.Fatal("Has after Add is wrong")
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	if s.Has("x") {
		t.Fatal("x outlived its ttl")
	}
	s.Add("a")
	s.Add("b")
	s.Add("c") // full: starts over
	if s.Has("a") || !s.Has("c") {
		t.Fatal("a full set must start over")
	}
}
