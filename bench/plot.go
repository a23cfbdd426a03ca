package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// One colour and glyph per system, the same in every chart.
var palette = map[string]struct {
	c     color.RGBA
	shape draw.GlyphDrawer
	dash  []vg.Length
}{
	"ringlog":        {color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}, draw.CircleGlyph{}, nil},
	"tidwall/wal":    {color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, draw.SquareGlyph{}, nil},
	"rosedblabs/wal": {color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, draw.TriangleGlyph{}, nil},
	"raft-wal":       {color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 255}, draw.PyramidGlyph{}, nil},
	"raw":            {color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 255}, draw.CrossGlyph{}, []vg.Length{vg.Points(4), vg.Points(2)}},
	"raw-group":      {color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 255}, draw.BoxGlyph{}, []vg.Length{vg.Points(6), vg.Points(3)}},
}

func chartName(size int) string { return fmt.Sprintf("throughput-%d.png", size) }

// sizePlot draws appends/s against writers for one record size, one line
// per system, both axes logarithmic.
func sizePlot(cfg config, results []result, size int) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Durable appends of %s records", sizeName(size))
	p.X.Label.Text = "concurrent writers"
	p.Y.Label.Text = "appends/s (median of rounds)"
	p.X.Scale = plot.LogScale{}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = humanTicks{}
	var ticks []plot.Tick
	for _, w := range cfg.writers {
		ticks = append(ticks, plot.Tick{Value: float64(w), Label: strconv.Itoa(w)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	lo, hi := 0.0, 0.0
	for _, s := range cfg.systems {
		var xys plotter.XYs
		for _, r := range results {
			if r.size == size && r.system == s.name && r.appendsPerSec > 0 {
				xys = append(xys, plotter.XY{X: float64(r.writers), Y: r.appendsPerSec})
				if lo == 0 || r.appendsPerSec < lo {
					lo = r.appendsPerSec
				}
				hi = max(hi, r.appendsPerSec)
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		st := palette[s.name]
		line.Color, points.Color = st.c, st.c
		line.Width = vg.Points(1.5)
		if s.name == "ringlog" {
			line.Width = vg.Points(2.5)
		}
		line.Dashes = st.dash
		points.Shape = st.shape
		points.Radius = vg.Points(3)
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	if hi > 0 {
		// Leave room above for the legend.
		p.Y.Min, p.Y.Max = lo/2, hi*8
	}
	return p, nil
}

// writeCharts writes one PNG per record size and throughput.png with all
// sizes side by side.
func writeCharts(cfg config, results []result) error {
	var row []*plot.Plot
	for _, size := range cfg.sizes {
		p, err := sizePlot(cfg, results, size)
		if err != nil {
			return err
		}
		if err := p.Save(16*vg.Centimeter, 12*vg.Centimeter, filepath.Join(cfg.out, chartName(size))); err != nil {
			return err
		}
		row = append(row, p)
	}
	const dpi = 110
	w, h := vg.Length(len(row))*14*vg.Centimeter, 12*vg.Centimeter
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Centimeter, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10)}
	canvases := plot.Align([][]*plot.Plot{row}, tiles, dc)
	for i, p := range row {
		p.Draw(canvases[0][i])
	}
	file, err := os.Create(filepath.Join(cfg.out, "throughput.png"))
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(file); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// humanTicks are log ticks labelled 1k, 10k, 100k, 1M instead of 1e+03.
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.LogTicks{Prec: -1}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = human(ticks[i].Value)
		}
	}
	return ticks
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
