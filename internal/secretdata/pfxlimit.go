package secretdata

import (
	"encoding/asn1"
	"fmt"
	"math/big"
)

// maxPFXIterations caps the key-derivation iteration counts a PFX may ask
// for. Decoding runs PBKDF for the MAC, each encrypted safe and each
// shrouded key with the count stored in the file, and go-pkcs12 has no
// limit: a file asking for 2^31 iterations would pin a CPU of the node's
// driver for minutes. Real files use 2,000 to 600,000.
const maxPFXIterations = 1 << 20

// checkPFXIterations walks the DER of a PFX (descending into OCTET STRINGs
// that hold DER, as the authenticated safe and plain safe contents do) and
// rejects any salt-then-iteration-count pair (MacData, PBES1 and PBKDF2
// parameters all have this shape) above maxPFXIterations. Counts inside
// encrypted safe contents are out of its sight; reaching them needs the
// outer MAC and encryption, whose counts are checked.
func checkPFXIterations(der []byte) error {
	return walkDER(der, 0)
}

func walkDER(b []byte, depth int) error {
	if depth > 32 {
		return fmt.Errorf("PFX nests deeper than 32 levels")
	}
	var prevSalt bool
	for len(b) > 0 {
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(b, &v)
		if err != nil {
			return nil // not (or no longer) DER: nothing here for PBKDF to read
		}
		b = rest
		switch {
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagInteger && prevSalt:
			n := new(big.Int).SetBytes(v.Bytes)
			if len(v.Bytes) > 0 && v.Bytes[0]&0x80 == 0 && n.Cmp(big.NewInt(maxPFXIterations)) > 0 {
				return fmt.Errorf("the PFX asks for %s key-derivation iterations; at most %d are accepted", n, maxPFXIterations)
			}
		case v.IsCompound:
			if err := walkDER(v.Bytes, depth+1); err != nil {
				return err
			}
		case v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString:
			if err := walkDER(v.Bytes, depth+1); err != nil {
				return err
			}
		}
		prevSalt = v.Class == asn1.ClassUniversal && v.Tag == asn1.TagOctetString
	}
	return nil
}
