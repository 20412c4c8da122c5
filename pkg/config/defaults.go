package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ErrSettings wraps every error Load and Defaults report about settings, so
// a caller can tell bad settings (exit code 2) from a failure to start.
var ErrSettings = errors.New("invalid settings")

// Validator is a settings struct that checks itself. Load calls Validate
// after reading the environment, and each service's New calls it again for
// settings built in Go; it is the one place a service's settings are
// checked.
type Validator interface {
	Validate() error
}

// Defaults sets every zero field of the struct spec points to that has a
// `default` tag to that default, parsed as envconfig parses it. The tag is
// the one place a default is written: a Config built in Go and passed
// through Defaults behaves like one read from an empty environment.
// Embedded and nested structs are walked; a field without a tag is left
// alone, and so is a field already set.
func Defaults(spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%w: config.Defaults needs a pointer to a struct, got %T", ErrSettings, spec)
	}
	return defaults(v.Elem())
}

var durationType = reflect.TypeFor[time.Duration]()

func defaults(v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f, sf := v.Field(i), t.Field(i)
		if !sf.IsExported() {
			continue
		}
		if f.Kind() == reflect.Struct && sf.Type != durationType {
			if err := defaults(f); err != nil {
				return err
			}
			continue
		}
		def, ok := sf.Tag.Lookup("default")
		if !ok || !f.IsZero() {
			continue
		}
		if err := setDefault(f, def); err != nil {
			name := sf.Tag.Get("envconfig")
			if name == "" {
				name = sf.Name
			}
			return fmt.Errorf("%w: default %q of %s: %v", ErrSettings, def, name, err)
		}
	}
	return nil
}

func setDefault(f reflect.Value, def string) error {
	if f.Type() == durationType {
		d, err := time.ParseDuration(def)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(def)
	case reflect.Bool:
		b, err := strconv.ParseBool(def)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(def, 0, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(def, 0, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetUint(n)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(def, f.Type().Bits())
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", f.Type())
		}
		if def == "" {
			return nil
		}
		f.Set(reflect.ValueOf(strings.Split(def, ",")).Convert(f.Type()))
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// Prepare is what a service's New does with a Config built in Go: the zero
// fields take their defaults (Defaults), then the settings are validated
// (Validate), exactly as config.Load validates those of the environment.
func Prepare(spec Validator) error {
	if err := Defaults(spec); err != nil {
		return err
	}
	return Validate(spec)
}

// Validate runs the Validate of every settings struct embedded in the
// struct spec points to (the shared NATS, ClickHouse and Redis settings
// check their files), then spec's own when it is a Validator.
func Validate(spec any) error {
	if v := reflect.ValueOf(spec); v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		t := v.Elem().Type()
		for i := range t.NumField() {
			if !t.Field(i).Anonymous || t.Field(i).Type.Kind() != reflect.Struct {
				continue
			}
			if ev, ok := v.Elem().Field(i).Addr().Interface().(Validator); ok {
				if err := ev.Validate(); err != nil {
					return err
				}
			}
		}
	}
	if v, ok := spec.(Validator); ok {
		return v.Validate()
	}
	return nil
}

// Default returns a T with every field at its default tag: what a service
// reads from an empty environment. A default tag that does not parse is a
// programming error, and panics.
func Default[T any]() T {
	var c T
	if err := Defaults(&c); err != nil {
		panic(err)
	}
	return c
}
