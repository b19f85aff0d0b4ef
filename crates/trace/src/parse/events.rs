//! One event kind's fields into an [`Event`]: the slab, page and vmalloc events.

use super::fields::{Fields, Key};
use super::values::{check_slab_sizes, decimal, hex, number, order, pfn, pointer, traced_size};
use super::LineParser;
use crate::event::{CallSite, Event, EventName, SlabAlloc, SlabFree};

impl LineParser {
    pub(super) fn event(&mut self, name: EventName, f: &Fields<'_>) -> Result<Event, &'static str> {
        use EventName::*;
        Ok(match name {
            Kmalloc | KmallocNode => Event::Kmalloc(self.slab_alloc(f)?),
            KmemCacheAlloc | KmemCacheAllocNode => Event::CacheAlloc(self.slab_alloc(f)?),
            Kfree => Event::Kfree(self.slab_free(f)?),
            KmemCacheFree => Event::CacheFree(self.slab_free(f)?),
            MmPageAlloc => self.page_alloc(f)?,
            MmPageFree => Event::PageFree {
                pfn: pfn(f.need(Key::Pfn)?)?,
                order: order(f.need(Key::Order)?)?,
            },
            MmPageFreeBatched => Event::PageFree {
                pfn: pfn(f.need(Key::Pfn)?)?,
                order: 0,
            },
            AllocVmapArea => Event::AllocVmapArea {
                addr: number(f.need(Key::VaStart)?)?,
                size: traced_size(number(f.need(Key::Size)?)?)?,
                align: number(f.need(Key::Align)?)?,
                vstart: number(f.need(Key::VStart)?)?,
                vend: number(f.need(Key::VEnd)?)?,
                failed: number(f.need(Key::Failed)?)? != 0,
            },
            FreeVmapAreaNoflush => Event::FreeVmapArea {
                addr: number(f.need(Key::VaStart)?)?,
                nr_lazy: number(f.need(Key::NrLazy)?)?,
                nr_lazy_max: number(f.need(Key::NrLazyMax)?)?,
            },
            PurgeVmapAreaLazy => Event::PurgeVmapAreas {
                start: number(f.need(Key::Start)?)?,
                end: number(f.need(Key::End)?)?,
                purged: number(f.need(Key::NumPurged)?)?,
            },
        })
    }

    fn call_site(&mut self, text: &str) -> Result<CallSite, &'static str> {
        if text.is_empty() {
            return Err("empty call_site=");
        }
        match hex(text) {
            Some(a) => Ok(CallSite::Addr(a)),
            None => Ok(CallSite::Symbol(self.symbols.intern(text))),
        }
    }

    fn cache_name(&mut self, f: &Fields<'_>) -> Option<u32> {
        f.get(Key::Name).map(|n| self.symbols.intern(n))
    }

    fn slab_alloc(&mut self, f: &Fields<'_>) -> Result<SlabAlloc, &'static str> {
        let ptr = pointer(f.need(Key::Ptr)?)?;
        let bytes_req = decimal(f.need(Key::BytesReq)?)?;
        let bytes_alloc = decimal(f.need(Key::BytesAlloc)?)?;
        check_slab_sizes(ptr, bytes_req, bytes_alloc)?;
        Ok(SlabAlloc {
            call_site: self.call_site(f.need(Key::CallSite)?)?,
            ptr,
            bytes_req,
            bytes_alloc,
            gfp: self.gfp.parse(f.need(Key::GfpFlags)?),
            node: f
                .get(Key::Node)
                .map(|n| n.parse::<i32>().map_err(|_| "node= is not a number"))
                .transpose()?,
            accounted: f
                .get(Key::Accounted)
                .map(|a| match a {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err("accounted= is neither true nor false"),
                })
                .transpose()?,
            cache_name: self.cache_name(f),
        })
    }

    fn slab_free(&mut self, f: &Fields<'_>) -> Result<SlabFree, &'static str> {
        Ok(SlabFree {
            call_site: self.call_site(f.need(Key::CallSite)?)?,
            ptr: pointer(f.need(Key::Ptr)?)?,
            cache_name: self.cache_name(f),
        })
    }

    fn page_alloc(&mut self, f: &Fields<'_>) -> Result<Event, &'static str> {
        let page_is_null = match f.get(Key::Page) {
            Some(p) => pointer(p)? == 0,
            None => false,
        };
        let frame = pfn(f.need(Key::Pfn)?)?;
        Ok(Event::PageAlloc {
            pfn: (!page_is_null).then_some(frame),
            order: order(f.need(Key::Order)?)?,
            migratetype: decimal(f.need(Key::Migratetype)?)?
                .try_into()
                .map_err(|_| "migratetype= out of range")?,
            gfp: self.gfp.parse(f.need(Key::GfpFlags)?),
        })
    }
}
