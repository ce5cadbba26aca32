package taps

import (
	"go/importer"
	"go/token"
	"go/types"
	"strings"
	"testing"
)

// forbidden are the packages whose types must never appear in taps'
// exported API: the actor runtime, protobuf, and gotaps' own
// implementation layers.
var forbidden = []string{
	"github.com/asynkron/protoactor-go",
	"google.golang.org/protobuf",
	"github.com/gotaps/gotaps/actors",
	"github.com/gotaps/gotaps/messages",
	"github.com/gotaps/gotaps/stacks",
}

func TestExportedAPIHasNoImplementationTypes(t *testing.T) {
	imp := importer.ForCompiler(token.NewFileSet(), "source", nil)
	pkg, err := imp.Import("github.com/gotaps/gotaps/taps")
	if err != nil {
		t.Skipf("cannot type-check taps from source here: %v", err)
	}
	seen := map[types.Type]bool{}
	var bad []string
	var check func(where string, typ types.Type)
	check = func(where string, typ types.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		switch tt := typ.(type) {
		case *types.Named:
			if obj := tt.Obj(); obj.Pkg() != nil {
				path := obj.Pkg().Path()
				for _, f := range forbidden {
					if strings.HasPrefix(path, f) {
						bad = append(bad, where+": "+typ.String())
						return
					}
				}
				if path != pkg.Path() {
					return // stdlib and framers types are fine; their internals are theirs
				}
			}
			for i := 0; i < tt.NumMethods(); i++ {
				m := tt.Method(i)
				if m.Exported() {
					check(where+"."+m.Name(), m.Type())
				}
			}
			check(where, tt.Underlying())
		case *types.Alias:
			check(where, types.Unalias(tt))
		case *types.Pointer:
			check(where, tt.Elem())
		case *types.Slice:
			check(where, tt.Elem())
		case *types.Array:
			check(where, tt.Elem())
		case *types.Map:
			check(where, tt.Key())
			check(where, tt.Elem())
		case *types.Chan:
			check(where, tt.Elem())
		case *types.Signature:
			for i := 0; i < tt.Params().Len(); i++ {
				check(where+"(param)", tt.Params().At(i).Type())
			}
			for i := 0; i < tt.Results().Len(); i++ {
				check(where+"(result)", tt.Results().At(i).Type())
			}
		case *types.Struct:
			for i := 0; i < tt.NumFields(); i++ {
				if f := tt.Field(i); f.Exported() {
					check(where+"."+f.Name(), f.Type())
				}
			}
		case *types.Interface:
			for i := 0; i < tt.NumMethods(); i++ {
				check(where+"."+tt.Method(i).Name(), tt.Method(i).Type())
			}
		}
	}
	scope := pkg.Scope()
	n := 0
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		n++
		check(name, obj.Type())
		if tn, ok := obj.(*types.TypeName); ok {
			ptr := types.NewPointer(tn.Type())
			ms := types.NewMethodSet(ptr)
			for i := 0; i < ms.Len(); i++ {
				if m := ms.At(i).Obj(); m.Exported() {
					check(name+"."+m.Name(), m.Type())
				}
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d exported names found: the walk is broken", n)
	}
	for _, b := range bad {
		t.Errorf("implementation type in the exported API: %s", b)
	}
}
